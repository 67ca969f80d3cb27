"""The two per-block slots of the unified transformer: token-level FFN and sequence-level layer.

Interfaces (the contract between model/ and the MoE modules; `task` is (B,) with MMU=0, T2I=1):

    ffn slot       forward(x (B, L, D), task (B,), token_mask (B, L) bool | None)
                   -> (y (B, L, D), aux dict);  token_mask marks real (non-pad) tokens.
    sequence slot  forward(x (B, L, D), task (B,), token_mask (B, L) bool | None,
                           features dict[str, (B, N_f, D_f)] | None) -> (y (B, L, D), aux dict)
                   x is the residual stream and y replaces it (Identity: y = x). token_mask marks
                   the *conditioning* tokens the router may pool over (see transformer.py):
                   y must be computed for every position, masked or not.

Any "balance_loss" in aux is summed over layers into the model's aux_loss.
MoE modules are imported lazily, so the dense model never needs them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .tasks import T2I


def condition_mask(input_ids: Tensor, task: Tensor, vocab) -> Tensor:
    """(B, L) bool: the conditioning tokens a sequence-level router may pool over.

    mmu: real tokens up to and including the first <|eoi|>; t2i: real tokens before <|soi|>."""
    real = input_ids != vocab.pad_id
    soi = input_ids == vocab.special_id("soi")
    eoi = input_ids == vocab.special_id("eoi")
    before_image = soi.long().cumsum(-1) == 0                                 # t2i prompt
    through_eoi = (eoi.long().cumsum(-1) - eoi.long()) == 0                   # mmu prefix
    return real & torch.where((task == T2I)[:, None], before_image, through_eoi)


class DenseFFN(nn.Module):
    """The plain transformer MLP: Linear -> GELU -> Linear. One MLP for both tasks."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.up = nn.Linear(d_model, d_ff)
        self.down = nn.Linear(d_ff, d_model)
        self.act = nn.GELU(approximate="tanh")

    def forward(self, x: Tensor, task: Tensor, token_mask: Tensor | None = None
                ) -> tuple[Tensor, dict]:
        return self.down(self.act(self.up(x))), {}


class IdentitySequence(nn.Module):
    """No sequence-level layer: returns the residual stream unchanged."""

    def forward(self, x: Tensor, task: Tensor, token_mask: Tensor | None = None,
                features: dict | None = None) -> tuple[Tensor, dict]:
        return x, {}


def build_ffn_slot(config: ModelConfig) -> nn.Module:
    if config.ffn == "dense":
        return DenseFFN(config.d_model, config.d_ff)
    if config.ffn == "token_moe":
        from .moe_config import TokenMoEConfig
        from .token_moe import TokenMoE
        return TokenMoE(config.d_model, config.d_ff, config.moe or TokenMoEConfig())
    raise ValueError(f"unknown ffn slot {config.ffn!r}")


def build_sequence_slot(config: ModelConfig) -> nn.Module:
    if config.sequence == "identity":
        return IdentitySequence()
    if config.sequence == "sequence_moe":
        from .moe_config import SequenceMoEConfig
        from .sequence_moe import SequenceMoE
        return SequenceMoE(config.d_model, config.seq_moe or SequenceMoEConfig())
    raise ValueError(f"unknown sequence slot {config.sequence!r}")
