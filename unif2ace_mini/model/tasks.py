"""The two tasks of the unified model and how a sequence announces its task.

Shared meaning across model/, the MoE modules and training: a LongTensor `task` of shape (B,)
with MMU = 0 (understanding: image -> text) and T2I = 1 (generation: text -> image). A sequence
states its task with its first real (non-pad) token, <|mmu|> or <|t2i|> (Show-o's layout).
"""

from __future__ import annotations

import torch
from torch import Tensor

MMU = 0
T2I = 1
TASK_NAMES = {MMU: "mmu", T2I: "t2i"}
TASK_TOKENS = {MMU: "<|mmu|>", T2I: "<|t2i|>"}


def task_from_ids(input_ids: Tensor, vocab) -> Tensor:
    """(B, L) ids -> (B,) task from each row's first non-pad token; ValueError if it is neither
    <|t2i|> nor <|mmu|> (a row of pads only is an error too)."""
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2:
        raise ValueError(f"input_ids must be a (B, L) tensor, got "
                         f"{tuple(getattr(input_ids, 'shape', ()))}")
    real = input_ids != vocab.pad_id                                          # (B, L)
    first = real.long().argmax(-1)                                            # first real column
    head = input_ids.gather(1, first[:, None]).squeeze(1)                     # (B,)
    t2i, mmu = vocab.special_id("t2i"), vocab.special_id("mmu")
    ok = real.any(-1) & ((head == t2i) | (head == mmu))
    if not ok.all():
        bad = int((~ok).nonzero()[0])
        raise ValueError(f"row {bad} must start (after any pads) with <|t2i|> ({t2i}) or "
                         f"<|mmu|> ({mmu}); its first real token is {int(head[bad])}")
    return (head == t2i).long()


def check_task(task: Tensor, batch: int) -> Tensor:
    """Validate a (B,) task tensor of MMU / T2I values; returns it as long."""
    if not isinstance(task, Tensor) or task.shape != (batch,):
        raise ValueError(f"task must be a tensor of shape ({batch},), got "
                         f"{tuple(getattr(task, 'shape', ()))}")
    if ((task != MMU) & (task != T2I)).any():
        raise ValueError(f"task values must be {MMU} (mmu) or {T2I} (t2i), got "
                         f"{sorted(set(task.tolist()))}")
    return task.long()
