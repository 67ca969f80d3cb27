"""Grouped sequence-level mixture of experts (UniF²ace; DESIGN §8): the sequence slot.

One routing decision per *sequence*: a router reads the mean of LN(x) over the sequence's
conditioning tokens (token_mask; all tokens where a row has none) and picks the top-2 experts of
the group of the sample's task:

    understanding (mmu, task 0):  [clip, face, copy, copy]
    generation    (t2i, task 1):  [copy, zero, noise, copy]

    p = softmax(router(mean LN(x))) over the group,  g = top-2 of p renormalised,
    y = g_1 * E_1(x) + g_2 * E_2(x)   with   copy(x) = x,  zero(x) = 0,
    clip / face / noise(x) = w * x + (1 - w) * Resampler(LN(x), F)   (resampler.py).

The slot receives the raw residual stream and its output replaces it (transformer.py), so copy
keeps the stream, zero drops it for that sequence (with a copy beside it: scales it by the copy's
gate) and an injecting expert mixes features in. This module owns the LayerNorm the paper puts
before the sequence-level MoE: the router and the resampler's queries read LN(x).

Features (`features` dict, each (B, N_f, D_f)): "clip" for the CLIP expert, "face" for the face
expert. The noise expert reads `noise_tokens` N(0, 1) vectors of size `noise_dim`: fresh from the
global torch RNG in training, one fixed draw (seed `noise_seed`, the same for every row) in eval
mode. See moe_config.py for why.
Fallback: where an expert's features are absent (features None, key missing, or a row of all
zeros, which is how t2i rows of a mixed batch carry "no image"), that expert acts as copy for
those rows: it injects nothing. Unknown keys and wrong shapes are ValueErrors.

Balance loss per group g (as the token MoE): L_g = n_g * sum_j f_j * P_j over the group's
sequences, f_j = share of the group's 2 * B_g choices that went to expert j, P_j = mean router
probability; aux["balance_loss"] = lambda_mmu * L_mmu + lambda_t2i * L_t2i (1 * lambda when
uniform). aux["routing"] (B, E) and aux["chosen"] (B, 2) use indices local to the row's group
(`config.groups[task]` names them); E is the larger group's size, the smaller group's row is
padded with probability 0.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from .moe_config import FEATURE_KINDS, GROUP_NAMES, SequenceMoEConfig
from .resampler import InjectionExpert
from .token_moe import check_slot_inputs

INJECTING_KINDS = ("noise", "clip", "face")


class SequenceMoE(nn.Module):
    """forward(x (B, L, D), task (B,), token_mask (B, L) | None, features | None) -> (y, aux)."""

    def __init__(self, d_model: int, config: SequenceMoEConfig | None = None):
        super().__init__()
        self.config = config = config or SequenceMoEConfig()
        self.d_model = d_model
        self.norm = nn.LayerNorm(d_model)
        # Experts of both groups side by side: global id j, group_of[j], kinds[j].
        self.kinds = [kind for group in config.groups for kind in group]
        sizes = [len(group) for group in config.groups]
        self.offsets = (0, sizes[0])
        self.max_group = max(sizes)
        self.router = nn.Linear(d_model, len(self.kinds), bias=False)
        nn.init.normal_(self.router.weight, std=0.02)    # near-uniform routing at the start
        group_of = torch.tensor([g for g, n in enumerate(sizes) for _ in range(n)])
        self.register_buffer("group_of", group_of, persistent=False)               # (n_total,)
        # local index -> global id per group, padded with the group's first expert (p masked).
        local = torch.tensor([[self.offsets[g] + min(i, sizes[g] - 1)
                               for i in range(self.max_group)] for g in range(2)])
        self.register_buffer("local_to_global", local, persistent=False)           # (2, E)
        self.register_buffer("local_valid", torch.tensor(
            [[i < sizes[g] for i in range(self.max_group)] for g in range(2)]), persistent=False)
        self.experts = nn.ModuleDict({
            self.expert_name(j): InjectionExpert(d_model, config.feature_dim(kind),
                                                 config.resampler_heads, config.resampler_latents,
                                                 config.init_x_weight)
            for j, kind in enumerate(self.kinds) if kind in INJECTING_KINDS})
        noise = torch.randn(config.noise_tokens, config.noise_dim,
                            generator=torch.Generator().manual_seed(config.noise_seed))
        self.register_buffer("eval_noise", noise, persistent=False)   # rebuilt from the config

    def expert_name(self, j: int) -> str:
        """'mmu0_clip', 't2i2_noise', ...: group, index in the group, kind."""
        g = int(j >= self.offsets[1])
        return f"{GROUP_NAMES[g]}{j - self.offsets[g]}_{self.kinds[j]}"

    def extra_repr(self) -> str:
        return f"mmu={list(self.config.mmu_experts)}, t2i={list(self.config.t2i_experts)}, " \
               f"top_k={self.config.top_k}"

    # -- inputs ----------------------------------------------------------------------------------
    def check_features(self, features: dict | None, batch: int) -> dict:
        if features is None:
            return {}
        if not isinstance(features, dict):
            raise ValueError(f"features must be a dict of name -> (B, N_f, D_f) tensors, got "
                             f"{type(features).__name__}")
        for name, f in features.items():
            if name not in FEATURE_KINDS:
                raise ValueError(f"unknown feature {name!r}; the sequence MoE reads "
                                 f"{list(FEATURE_KINDS)}")
            dim = self.config.feature_dim(name)
            if not isinstance(f, Tensor) or f.dim() != 3 or f.shape[0] != batch \
                    or f.shape[-1] != dim or not f.is_floating_point():
                raise ValueError(f"features[{name!r}] must be a float ({batch}, N_f, {dim}) tensor "
                                 f"({name}_dim={dim} in SequenceMoEConfig), got "
                                 f"{tuple(getattr(f, 'shape', ()))}")
        return features

    def expert_features(self, kind: str, rows: Tensor, features: dict, x: Tensor
                        ) -> tuple[Tensor | None, Tensor | None]:
        """Features (b, N_f, D_f) for `rows`, and which rows have any (b,) bool; None: none do."""
        if kind == "noise":
            if self.training:
                shape = (rows.numel(), self.config.noise_tokens, self.config.noise_dim)
                return torch.randn(shape, device=x.device, dtype=x.dtype), None
            return self.eval_noise.to(x.dtype).expand(rows.numel(), -1, -1), None
        if kind not in features:
            return None, None
        f = features[kind].index_select(0, rows)                                # (b, N_f, D_f)
        present = f.detach().abs().amax(dim=(1, 2)) > 0                         # (b,)
        if not present.any():
            return None, None
        return f, None if present.all() else present

    # -- routing ---------------------------------------------------------------------------------
    def route(self, normed: Tensor, task: Tensor, token_mask: Tensor | None):
        """Router probabilities over all experts (B, n_total), zero outside the row's group;
        top-k global ids and renormalised gates (B, k)."""
        if token_mask is None:
            pooled = normed.mean(dim=1)
        else:
            weights = token_mask.to(normed.dtype)
            weights = torch.where(weights.sum(1, keepdim=True) > 0, weights,
                                  torch.ones_like(weights))          # no condition: pool all
            pooled = torch.bmm(weights.unsqueeze(1), normed).squeeze(1) \
                / weights.sum(1, keepdim=True)                                   # (B, D)
        logits = self.router(pooled).float()                                     # (B, n_total)
        logits = logits.masked_fill(self.group_of[None] != task[:, None], float("-inf"))
        probs = logits.softmax(dim=-1)
        top_p, top_i = probs.topk(self.config.top_k, dim=-1)                     # (B, k)
        return probs, top_i, top_p / top_p.sum(dim=-1, keepdim=True)

    def balance(self, probs: Tensor, top_i: Tensor, task: Tensor) -> Tensor:
        n_total = len(self.kinds)
        counts = torch.bincount(top_i.flatten(), minlength=n_total).float()      # (n_total,)
        rows = torch.bincount(task, minlength=2).float().clamp_min(1)[self.group_of]
        f = counts / (self.config.top_k * rows)
        P = probs.sum(0) / rows
        n_g = torch.bincount(self.group_of, minlength=2).float()[self.group_of]
        per_expert = n_g * f * P                                                  # (n_total,)
        lambdas = torch.tensor([self.config.lambda_mmu, self.config.lambda_t2i],
                               device=probs.device)[self.group_of]
        return (lambdas * per_expert).sum()

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, task: Tensor, token_mask: Tensor | None = None,
                features: dict | None = None) -> tuple[Tensor, dict]:
        check_slot_inputs(x, task, token_mask, self.d_model)
        features = self.check_features(features, x.shape[0])
        task = task.long()
        normed = self.norm(x)                                                    # (B, L, D)
        probs, top_i, gates = self.route(normed, task, token_mask)

        # Every expert is a * x + b * R(x): copy (1, 0), zero (0, 0), injection (w, 1 - w), and
        # an injection without features acts as copy (1, 0). So y = coef * x + sum_j g_j b_j R_j
        # with one per-row coefficient, and the resampler outputs are added in one index_add.
        coef = x.new_zeros(x.shape[0])                                           # (B,)
        calls = []                                      # (expert, rows, features, share, has)
        for j, kind in enumerate(self.kinds):
            gate = (gates * (top_i == j)).sum(dim=1).to(x.dtype)                 # (B,), 0: unused
            rows = (top_i == j).any(dim=1).nonzero().squeeze(1)                  # (b,)
            if kind == "zero" or rows.numel() == 0:
                continue
            feats, present = (None, None) if kind == "copy" else \
                self.expert_features(kind, rows, features, x)
            if feats is None:                                 # copy, or nothing to inject
                coef = coef + gate
                continue
            expert = self.experts[self.expert_name(j)]
            w = expert.x_weight.to(x.dtype)
            share = gate.index_select(0, rows)                                   # (b,) g_j
            has = share.new_ones(rows.numel()) if present is None else present.to(x.dtype)
            coef = coef.index_add(0, rows, share * (has * w + (1 - has)))     # no features: copy
            calls.append((expert, rows, feats, share * has * (1 - w)))
        y = x * coef[:, None, None]
        if calls:                          # one gather and one scatter for all resampler calls
            rows = torch.cat([c[1] for c in calls])
            queries = normed.index_select(0, rows).split([c[1].numel() for c in calls])
            injected = [expert.resampler(q, feats) * scale[:, None, None]        # (b, L, D)
                        for (expert, _, feats, scale), q in zip(calls, queries)]
            y = y.index_add(0, rows, torch.cat(injected))

        g = task[:, None]
        routing = probs.gather(1, self.local_to_global[task]) * self.local_valid[task]
        aux = {"balance_loss": self.balance(probs, top_i, task),
               "routing": routing.detach(),                                       # (B, E)
               "chosen": top_i - torch.tensor(self.offsets, device=x.device)[g],  # (B, k) local
               "gates": gates.detach()}                                           # (B, k)
        return y, aux
