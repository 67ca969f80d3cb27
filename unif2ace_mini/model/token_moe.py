"""Grouped token-level mixture of experts (UniF²ace §3.3, DESIGN §8): the FFN slot of a block.

Each token belongs to the group of its sample's task (0 = understanding/mmu, 1 = generation/t2i)
and never sees the other group's experts, so the two tasks do not fight over FFN weights. Inside
its group a token passes through

    y = sum_j Shared_j(x) + sum_{i in topK} g_i * Expert_i(x),
    p = softmax(router_group(x)) over the group's n routed experts,
    g_i = p_i / sum_{i' in topK} p_i'      (renormalised top-K)

with every expert a small GELU MLP (d_model -> expert_d_ff -> d_model, no biases, as in
Mixtral / DeepSeekMoE). Expert widths split the dense d_ff over the n_shared + K experts a token
uses, so active compute and parameters match the dense FFN (see moe_config.py).

Balance loss per group g (Switch Transformer, generalised to top-K):

    L_g = n * sum_i f_i * P_i,   f_i = (routed assignments to i) / (K * T_g),  P_i = mean_t p_i(t)

over the group's T_g real tokens. It is 1 when routing is uniform; a group with no tokens in
the batch contributes 0. aux["balance_loss"] = lambda_mmu * L_mmu + lambda_t2i * L_t2i.

Dispatch (no Python loop over tokens): every (token, expert) assignment, shared ones included,
gets a global expert id; one stable sort by id lays the tokens out expert by expert; one
`index_select` gathers them, one grouped matmul per layer of the MLP (a loop over the experts'
contiguous slices, or `torch.nn.functional.grouped_mm` where the build supports it) runs the
experts, and one `index_add_` scatters the gate-weighted outputs back. `index_select` /
`index_add_` are each other's backward, both fast on CPU (advanced indexing's backward,
index_put_ with accumulate, is ~10x slower there). Pad tokens get no assignment: their output is 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .moe_config import GROUP_NAMES, TokenMoEConfig


def check_slot_inputs(x: Tensor, task: Tensor, token_mask: Tensor | None, d_model: int) -> None:
    """ValueError naming the problem: x (B, L, D), task (B,) in {0, 1}, token_mask (B, L) bool."""
    if not isinstance(x, Tensor) or x.dim() != 3 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor (B, L, D), got {tuple(getattr(x, 'shape', ()))}")
    if x.shape[-1] != d_model:
        raise ValueError(f"x has width {x.shape[-1]} but the layer was built for d_model={d_model}")
    if not isinstance(task, Tensor) or task.shape != (x.shape[0],) or task.is_floating_point():
        raise ValueError(f"task must be an integer tensor of shape ({x.shape[0]},), got "
                         f"{tuple(getattr(task, 'shape', ()))}")
    if task.numel() and (task.min() < 0 or task.max() > 1):
        raise ValueError(f"task ids must be 0 (mmu) or 1 (t2i), got {sorted(set(task.tolist()))}")
    if token_mask is not None:
        if not isinstance(token_mask, Tensor) or token_mask.shape != x.shape[:2]:
            raise ValueError(f"token_mask must have shape {tuple(x.shape[:2])}, got "
                             f"{tuple(getattr(token_mask, 'shape', ()))}")
        if token_mask.dtype != torch.bool:
            raise ValueError(f"token_mask must be bool, got {token_mask.dtype}")


def _grouped_mm_works() -> bool:
    """True where F.grouped_mm runs fp32 on CPU with autograd (torch >= 2.9's CPU fallback)."""
    if not hasattr(F, "grouped_mm"):
        return False
    try:
        a = torch.ones(4, 4, requires_grad=True)
        b = torch.ones(2, 4, 4, requires_grad=True)
        F.grouped_mm(a, b, offs=torch.tensor([1, 4], dtype=torch.int32)).sum().backward()
        return True
    except (RuntimeError, TypeError, NotImplementedError):
        return False


_GROUPED_MM_CPU: bool | None = None


class TokenMoE(nn.Module):
    """forward(x (B, L, D), task (B,), token_mask (B, L) | None) -> (y (B, L, D), aux)."""

    def __init__(self, d_model: int, d_ff: int, config: TokenMoEConfig | None = None):
        super().__init__()
        self.config = config = config or TokenMoEConfig()
        if d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}")
        self.d_model, self.n, self.k, self.s = d_model, config.n_routed, config.k, config.n_shared
        self.hidden = config.expert_hidden(d_ff)
        self.per_group = self.s + self.n           # group g owns experts [g*per_group, (g+1)*...)
        n_experts = 2 * self.per_group             # per group: shared first, then routed
        # Both groups' routers in one matrix: one matmul routes every token.
        self.router = nn.Linear(d_model, 2 * self.n, bias=False)
        # Stacked expert weights (E, in, out) so the grouped matmul indexes experts directly.
        self.w_in = nn.Parameter(torch.empty(n_experts, d_model, self.hidden))
        self.w_out = nn.Parameter(torch.empty(n_experts, self.hidden, d_model))
        self.dispatch = "auto"                     # "auto" | "loop" | "grouped_mm"
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default (kaiming-uniform, bound 1/sqrt(fan_in)), expert by expert.
        nn.init.uniform_(self.w_in, -1 / math.sqrt(self.d_model), 1 / math.sqrt(self.d_model))
        nn.init.uniform_(self.w_out, -1 / math.sqrt(self.hidden), 1 / math.sqrt(self.hidden))

    def extra_repr(self) -> str:
        return (f"groups={GROUP_NAMES}, shared={self.s}, routed={self.n}, top_k={self.k}, "
                f"expert_d_ff={self.hidden}")

    # -- routing ---------------------------------------------------------------------------------
    def route(self, x: Tensor, group: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Router probabilities over the token's group (T, n), top-K local ids and gates (T, K)."""
        logits = self.router(x).float().view(-1, 2, self.n)                 # (T, 2, n)
        logits = logits.gather(1, group.view(-1, 1, 1).expand(-1, 1, self.n)).squeeze(1)
        probs = logits.softmax(dim=-1)                                      # (T, n)
        top_p, top_i = probs.topk(self.k, dim=-1)                           # (T, K)
        gates = top_p / top_p.sum(dim=-1, keepdim=True)
        return probs, top_i, gates

    def balance(self, probs: Tensor, top_i: Tensor, group: Tensor) -> tuple[Tensor, Tensor]:
        """Per-group Switch loss (2,) and load = f_i per group (2, n), over real tokens only."""
        routed_ids = (group.unsqueeze(1) * self.n + top_i).flatten()        # (T*K,) in [0, 2n)
        counts = torch.bincount(routed_ids, minlength=2 * self.n).view(2, self.n).float()
        tokens = torch.bincount(group, minlength=2).float().clamp_min(1)    # (2,) T_g
        prob_sum = probs.new_zeros(2, self.n).index_add_(0, group, probs)   # (2, n)
        load = counts / (self.k * tokens).unsqueeze(1)                      # f_i, sums to 1
        mean_prob = prob_sum / tokens.unsqueeze(1)                          # P_i
        return self.n * (load * mean_prob).sum(dim=1), load

    # -- experts ---------------------------------------------------------------------------------
    def experts(self, xs: Tensor, counts: Tensor) -> Tensor:
        """Run expert e on its contiguous slice of xs (rows sorted by expert): (A, D) -> (A, D)."""
        mode = self.dispatch
        if mode == "auto":
            global _GROUPED_MM_CPU
            if _GROUPED_MM_CPU is None:
                _GROUPED_MM_CPU = _grouped_mm_works()
            mode = "grouped_mm" if (xs.device.type == "cpu" and _GROUPED_MM_CPU
                                    and xs.dtype == torch.float32 and self.hidden % 4 == 0
                                    and self.d_model % 4 == 0) else "loop"
        if mode == "grouped_mm":
            offsets = counts.cumsum(0).to(torch.int32)
            hidden = F.gelu(F.grouped_mm(xs, self.w_in, offs=offsets))      # (A, H)
            return F.grouped_mm(hidden, self.w_out, offs=offsets)           # (A, D)
        if mode != "loop":
            raise ValueError(f"unknown dispatch {mode!r}; choose 'auto', 'loop' or 'grouped_mm'")
        outputs = [F.gelu(chunk @ self.w_in[e]) @ self.w_out[e]
                   for e, chunk in enumerate(xs.split(counts.tolist())) if chunk.shape[0]]
        return torch.cat(outputs) if outputs else xs.new_zeros(0, self.d_model)

    def forward(self, x: Tensor, task: Tensor, token_mask: Tensor | None = None
                ) -> tuple[Tensor, dict]:
        check_slot_inputs(x, task, token_mask, self.d_model)
        B, L, D = x.shape
        flat = x.reshape(B * L, D)
        group = task.long().repeat_interleave(L)                           # (B*L,)
        if token_mask is not None:
            real = token_mask.reshape(-1).nonzero().squeeze(1)              # (T,) flat positions
            tokens, group = flat.index_select(0, real), group.index_select(0, real)
        else:
            real, tokens = None, flat
        T = tokens.shape[0]
        if T == 0:                                  # all pads: nothing to route
            zero = x.sum() * 0.0
            return torch.zeros_like(x), {"balance_loss": zero, "load": {
                name: x.new_zeros(self.n) for name in GROUP_NAMES}}

        probs, top_i, gates = self.route(tokens, group)
        # Global expert ids of every assignment: shared ones first (gate 1), then routed.
        base = group.unsqueeze(1) * self.per_group                          # (T, 1)
        shared = base + torch.arange(self.s, device=x.device)               # (T, s)
        expert_ids = torch.cat([shared, base + self.s + top_i], dim=1)      # (T, s+K)
        weights = torch.cat([gates.new_ones(T, self.s), gates], dim=1)      # (T, s+K)

        per_token = self.s + self.k
        sorted_ids, order = expert_ids.flatten().sort(stable=True)          # (A,) A = T*(s+K)
        counts = torch.bincount(sorted_ids, minlength=2 * self.per_group)   # (E,)
        token_of = order // per_token                                       # (A,) into tokens
        source = real.index_select(0, token_of) if real is not None else token_of
        xs = flat.index_select(0, source)                                   # (A, D) by expert
        ys = self.experts(xs, counts)                                       # (A, D)
        ys = ys * weights.flatten().index_select(0, order).unsqueeze(1).to(ys.dtype)
        y = torch.zeros_like(flat).index_add_(0, source, ys)                # (B*L, D)

        per_group_loss, load = self.balance(probs, top_i, group)
        balance_loss = (self.config.lambda_mmu * per_group_loss[0]
                        + self.config.lambda_t2i * per_group_loss[1])
        aux = {"balance_loss": balance_loss,
               "load": {name: load[g].detach() for g, name in enumerate(GROUP_NAMES)}}
        return y.view(B, L, D), aux
