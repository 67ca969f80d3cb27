"""Omni-attention (Show-o) from the token ids alone, rotary positions and multi-head attention.

The mask is a pure function of the ids and the Vocabulary, so training, sampling and decoding
with a KV cache all build it the same way:
    text rows            causal: see every earlier real token and themselves;
    image rows           (strictly between <|soi|> and <|eoi|>) see their whole image segment,
                         both ways, plus everything before the segment;
    <|soi|>, <|eoi|>     are text-like (causal): <|eoi|> therefore sees the finished image;
    pad columns          are never attended to; a pad row attends only to itself, so softmax
                         never meets an all-masked row (no NaN) and its output is ignored.
Positions count real tokens only (`position_ids`), so padding on the left or the right, and how
much of it, changes nothing for the real tokens.

`KVCache` holds what appending tokens to a batch needs (keys/values, ids so far, tasks, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def image_segments(input_ids: Tensor, vocab) -> tuple[Tensor, Tensor]:
    """(in_image (B, L) bool, segment (B, L) long): which rows are image rows, and the index of
    the <|soi|> ... <|eoi|> segment each position belongs to (counting <|soi|>s so far)."""
    soi = input_ids == vocab.special_id("soi")
    eoi = input_ids == vocab.special_id("eoi")
    segment = soi.long().cumsum(-1)                                           # (B, L)
    depth = segment - eoi.long().cumsum(-1)                                   # open segments
    return (depth > 0) & ~soi, segment


def open_image_segment(input_ids: Tensor, vocab) -> Tensor:
    """(B,) bool: the sequence ends inside an image segment (a <|soi|> without its <|eoi|>)."""
    soi = (input_ids == vocab.special_id("soi")).sum(-1)
    eoi = (input_ids == vocab.special_id("eoi")).sum(-1)
    return soi > eoi


def omni_attention_mask(input_ids: Tensor, vocab) -> Tensor:
    """(B, L) ids -> (B, L, L) bool, True where row i may attend to column j.

    Pass as `attn_mask=mask[:, None]` to F.scaled_dot_product_attention (True = attend)."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, L), got {tuple(input_ids.shape)}")
    length = input_ids.shape[1]
    real = input_ids != vocab.pad_id                                          # (B, L)
    in_image, segment = image_segments(input_ids, vocab)
    causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
    same_image = (in_image[:, :, None] & in_image[:, None, :]
                  & (segment[:, :, None] == segment[:, None, :]))             # (B, L, L)
    allowed = (causal[None] | same_image) & real[:, None, :]
    eye = torch.eye(length, dtype=torch.bool, device=input_ids.device)
    return torch.where(real[:, :, None], allowed, eye[None])                  # pad row: itself


def image_position_ids(input_ids: Tensor, vocab) -> Tensor:
    """(B, L) index of each image row inside its own <|soi|> ... <|eoi|> segment (0, 1, ...),
    -1 on every other position."""
    in_image, _ = image_segments(input_ids, vocab)
    seen = in_image.long().cumsum(-1)                                        # image rows so far
    soi = input_ids == vocab.special_id("soi")
    before = torch.where(soi, seen, torch.zeros_like(seen)).cummax(-1).values  # at the segment start
    return torch.where(in_image, seen - before - 1, torch.full_like(seen, -1))


def position_ids(input_ids: Tensor, vocab) -> Tensor:
    """(B, L) position of each token among its row's real tokens (pads get their neighbour's)."""
    real = (input_ids != vocab.pad_id).long()
    return (real.cumsum(-1) - 1).clamp(min=0)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer; GPT-NeoX / Llama's rotate-half layout)."""

    def __init__(self, head_dim: int, max_len: int, theta: float = 10000.0):
        super().__init__()
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (P, Dh/2)
        angles = torch.cat([angles, angles], dim=-1)                               # (P, Dh)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(B, L) positions -> cos, sin of shape (B, 1, L, Dh), broadcast over heads."""
        return self.cos[positions][:, None].to(dtype), self.sin[positions][:, None].to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (B, H, L, Dh) by the position angles."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class SelfAttention(nn.Module):
    """Multi-head attention over an explicit boolean mask, with an optional key/value cache."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, mask: Tensor, rotary: tuple[Tensor, Tensor] | None = None,
                past: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, L, D); mask (B, 1, L, S) bool with S = past length + L; rotary = (cos, sin) of the
        new positions. Returns y (B, L, D) and the (keys, values) of all S positions, rotated."""
        batch, length, d_model = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        if rotary is not None:                                                # (B, H, L, Dh)
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)   # (B, H, S, Dh)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(batch, length, d_model)                 # (B, L, D)
        return self.out(y), (k, v)


@dataclass
class KVCache:
    """What decoding needs to continue a batch: per-layer rotated keys/values, the ids so far
    (for the mask and positions), each row's task, the features, and for a sequence-level MoE
    the stream rows its router pooled over (so appended tokens are routed as in a full pass)."""
    keys: list[Tensor]                      # per layer (B, H, S, Dh)
    values: list[Tensor]
    input_ids: Tensor                       # (B, S)
    task: Tensor                            # (B,)
    features: dict | None = None
    context: list[tuple[Tensor, Tensor] | None] = field(default_factory=list)  # (B, R, D), (B, R)

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]

    def select(self, rows: Tensor) -> "KVCache":
        """The cache of a subset (or reordering) of the batch rows, e.g. to drop finished rows."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.input_ids.device)
        pick = lambda t: t.index_select(0, rows)                             # noqa: E731
        return KVCache([pick(k) for k in self.keys], [pick(v) for v in self.values],
                       pick(self.input_ids), pick(self.task),
                       None if self.features is None else
                       {n: pick(f) for n, f in self.features.items()},
                       [None if c is None else (pick(c[0]), pick(c[1])) for c in self.context])
