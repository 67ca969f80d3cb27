"""Grouped token-level mixture of experts (UniF²ace; DESIGN §8): the FFN slot of a block.

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

Dispatch (no Python loop over tokens; `forward`):
  1. every (token, expert) assignment, shared ones included (gate 1), gets a global expert id;
     one stable sort by id lays the assignments out expert by expert;
  2. one `index_select` copies the tokens into an expert buffer: on CPU ("bmm") each expert's
     rows are cut into equal blocks (the last one padded) and two `torch.bmm` calls run all
     blocks at once; elsewhere ("loop") a loop over the experts runs one GEMM per expert slice;
  3. one `F.embedding_bag(mode="sum", per_sample_weights=gates)` gathers each token's s + K
     expert outputs and sums them with their gates.
`index_select` and `embedding_bag` have cheap backwards on CPU (advanced indexing's backward,
index_put_ with accumulate, is ~10x slower there). On the quick model (2 threads) this layer costs
~1.5x a dense FFN of the same active size, where a loop of per-expert GEMMs costs ~2.6x.
Pad tokens get no assignment and output 0.
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
        raise ValueError(f"x must be a float tensor (B, L, D), got "
                         f"{tuple(getattr(x, 'shape', ()))}")
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
        self.dispatch = "auto"                     # "auto" | "bmm" | "loop" (see layout)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02, out_std: float | None = None) -> None:
        """GPT-2 style N(0, std) weights, as the dense FFN's; the model may pass its scaled
        residual std as `out_std` for the output projections. A small router std starts routing
        near uniform, so every expert gets tokens (and gradient) from the first step."""
        nn.init.normal_(self.router.weight, std=std)
        nn.init.normal_(self.w_in, std=std)
        nn.init.normal_(self.w_out, std=std if out_std is None else out_std)

    def extra_repr(self) -> str:
        return (f"groups={GROUP_NAMES}, shared={self.s}, routed={self.n}, top_k={self.k}, "
                f"expert_d_ff={self.hidden}")

    # -- routing ---------------------------------------------------------------------------------
    def route(self, logits: Tensor, group: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Both routers' logits (T, 2n) -> probabilities over the token's group (T, n), top-K
        local ids and renormalised gates (T, K)."""
        logits = logits.float().view(-1, 2, self.n)                         # (T, 2, n)
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
    def _dispatch_mode(self, x: Tensor) -> str:
        if self.dispatch != "auto":
            return self.dispatch
        # CPU: padded bmm (see `layout`); elsewhere one GEMM per expert (large enough to be fast).
        return "bmm" if x.device.type == "cpu" else "loop"

    def layout(self, sorted_ids: Tensor, counts: Tensor, mode: str) -> tuple[Tensor, Tensor, int]:
        """Where each expert-sorted assignment goes in the expert buffer.

        "loop": the buffer is the sorted list itself, expert e's rows contiguous.
        "bmm": expert e's rows are cut into blocks of `rows` rows (the last one padded), and
        block b is multiplied by its expert's weights in one torch.bmm over all blocks. On 2 CPU
        threads this is ~1.5x faster than one GEMM per expert: bmm hands whole GEMMs to each
        thread, where a per-expert GEMM with a (d_model x expert_d_ff) weight gradient cannot
        split its long reduction. Blocks of about the mean load keep the padding and the weight
        copies (one per block) small. Returns (slot of each assignment, expert of each block
        (bmm only), rows per block)."""
        A = sorted_ids.shape[0]
        if mode == "loop":
            return torch.arange(A, device=sorted_ids.device), counts, 0
        rows = self.block_rows(counts)
        blocks_per_expert = (counts + rows - 1) // rows                      # (E,)
        block_expert = torch.repeat_interleave(
            torch.arange(counts.numel(), device=counts.device), blocks_per_expert)
        first_block = blocks_per_expert.cumsum(0) - blocks_per_expert
        first_row = counts.cumsum(0) - counts
        position = torch.arange(A, device=sorted_ids.device) - first_row[sorted_ids]
        slot = (first_block[sorted_ids] + position // rows) * rows + position % rows
        return slot, block_expert, rows

    @staticmethod
    def block_rows(counts: Tensor) -> int:
        """Rows per bmm block: of a few sizes around the mean expert load (multiples of 32), the
        one that pads least (ties: the larger, fewer blocks)."""
        mean = counts.sum().item() / counts.numel()
        sizes = torch.tensor(sorted({max(32, 32 * math.ceil(mean * f / 32))
                                     for f in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)}, reverse=True),
                             device=counts.device)                            # (C,)
        padded = ((counts[None] + sizes[:, None] - 1) // sizes[:, None] * sizes[:, None]).sum(1)
        return int(sizes[int(torch.argmin(padded))])      # argmin: first minimum = largest size

    def experts(self, xb: Tensor, block_expert: Tensor, rows: int) -> Tensor:
        """Expert outputs on the buffer: (S, D) -> (S, D).

        bmm: block b of `rows` rows goes through expert block_expert[b]; loop: block_expert holds
        each expert's row count and experts run one after the other on their slices."""
        if rows:
            blocks = xb.view(-1, rows, self.d_model)                        # (nB, rows, D)
            hidden = F.gelu(torch.bmm(blocks, self.w_in.index_select(0, block_expert)),
                            approximate="tanh")                             # (nB, rows, H)
            return torch.bmm(hidden, self.w_out.index_select(0, block_expert)).flatten(0, 1)
        outputs = [F.gelu(chunk @ self.w_in[e], approximate="tanh") @ self.w_out[e]
                   for e, chunk in enumerate(xb.split(block_expert.tolist())) if chunk.shape[0]]
        return torch.cat(outputs) if outputs else xb.new_zeros(0, self.d_model)

    def forward(self, x: Tensor, task: Tensor, token_mask: Tensor | None = None
                ) -> tuple[Tensor, dict]:
        check_slot_inputs(x, task, token_mask, self.d_model)
        mode = self._dispatch_mode(x)
        if mode not in ("loop", "bmm"):
            raise ValueError(f"unknown dispatch {mode!r}; choose 'auto', 'loop' or 'bmm'")
        B, L, D = x.shape
        flat = x.reshape(B * L, D)
        group = task.long().repeat_interleave(L)                           # (B*L,)
        logits = self.router(flat)                                          # (B*L, 2n): cheap
        if token_mask is not None:                  # pads: no assignment, no statistics, y = 0
            real = token_mask.reshape(-1).nonzero().squeeze(1)              # (T,) flat rows
            logits, group = logits.index_select(0, real), group.index_select(0, real)
        else:
            real = None
        T = logits.shape[0]
        if T == 0:
            zero = x.sum() * 0.0
            return torch.zeros_like(x), {"balance_loss": zero, "load": {
                name: x.new_zeros(self.n) for name in GROUP_NAMES}}

        probs, top_i, gates = self.route(logits, group)
        # Global expert ids of every assignment: shared ones first (gate 1), then routed.
        base = group.unsqueeze(1) * self.per_group                          # (T, 1)
        shared = base + torch.arange(self.s, device=x.device)               # (T, s)
        expert_ids = torch.cat([shared, base + self.s + top_i], dim=1)      # (T, s+K)
        weights = torch.cat([gates.new_ones(T, self.s), gates], dim=1)      # (T, s+K)

        sorted_ids, order = expert_ids.flatten().sort(stable=True)          # (A,) A = T*(s+K)
        counts = torch.bincount(sorted_ids, minlength=2 * self.per_group)   # (E,)
        token_of = order // (self.s + self.k)                               # (A,) into T
        source = real.index_select(0, token_of) if real is not None else token_of
        slot, block_expert, rows = self.layout(sorted_ids, counts, mode)
        size = int(block_expert.numel()) * rows if rows else sorted_ids.shape[0]
        # Padding slots read row 0; no token reads their output, so they get no gradient either.
        slot_source = source.new_zeros(size).scatter_(0, slot, source)      # (S,)
        xb = flat.index_select(0, slot_source)                              # (S, D)
        yb = self.experts(xb, block_expert, rows)                           # (S, D)
        # Combine: y_t = sum_j weight_tj * yb[slot_tj]. embedding_bag does the gather, the gate
        # product and the sum in one pass (and its backward in two), which on CPU costs about a
        # third of an index_add_ of gate-multiplied rows.
        slot_of = torch.empty_like(slot).scatter_(0, order, slot).view(T, -1)   # (T, s+K)
        y_real = F.embedding_bag(slot_of, yb, mode="sum",
                                 per_sample_weights=weights.to(yb.dtype))    # (T, D)
        y = y_real if real is None else torch.zeros_like(flat).index_copy(0, real, y_real)

        per_group_loss, load = self.balance(probs, top_i, group)
        balance_loss = (self.config.lambda_mmu * per_group_loss[0]
                        + self.config.lambda_t2i * per_group_loss[1])
        aux = {"balance_loss": balance_loss,
               "load": {name: load[g].detach() for g, name in enumerate(GROUP_NAMES)}}
        return y.view(B, L, D), aux
