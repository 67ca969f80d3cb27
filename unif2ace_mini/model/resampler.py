"""Perceiver-style resampler and the injecting expert of the sequence-level MoE (DESIGN §8).

An injecting expert (CLIP, face or noise) maps the residual stream x (B, L, D) to

    E(x, F) = w * x + (1 - w) * Resampler(LN(x), F),     w = softmax(a_x, a_f)[0]

where (a_x, a_f) are the expert's two trainable logits: w is the weight the sequence keeps on its
own stream, 1 - w the weight of the injected features. The paper says only "w is a softmax of
trainable weights"; a scalar pair per expert is the smallest reading of that.

Resampler (Perceiver-style cross-attention; the paper gives no details):
    queries  the sequence's own (normalised) tokens, (B, L, D): one read per position, because the
             formula adds Resampler(F) to x position by position. A token about the eyes can read
             the eye region's CLIP tokens while a token about the hair reads others.
    keys / values  the feature tokens projected to d_model and LayerNorm-ed, (B, N_f, D), plus
             `n_latents` learned slots shared by all samples (Flamingo's Perceiver Resampler also
             attends over its own latents). The slots give softmax somewhere to go when a token
             needs nothing from F (an attention sink), and give the noise expert a learned part.
The alternative the design left open, learned latents reading F and then one pooled vector added
to every token, can only shift a whole sequence by one vector; it cannot place an attribute.

Costs stay small: keys/values are computed once per sample from N_f + n_latents tokens, and a
token's output depends only on that token and F, so a KV cache stays exact (no token mixing).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class Resampler(nn.Module):
    """forward(queries (B, L, D), features (B, N_f, feature_dim)) -> (B, L, D)."""

    def __init__(self, d_model: int, feature_dim: int, n_heads: int = 4, n_latents: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"resampler: d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.feature_dim, self.n_heads = d_model, feature_dim, n_heads
        self.feature_proj = nn.Linear(feature_dim, d_model)
        self.feature_norm = nn.LayerNorm(d_model)     # CLIP tokens and unit face vectors: any scale
        self.latents = nn.Parameter(torch.randn(n_latents, d_model) * 0.02)     # (M, D)
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key_value = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model)
        # Start the injected term at the scale of a GPT-2-initialised stream, not above it.
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)

    def forward(self, queries: Tensor, features: Tensor) -> Tensor:
        B, L, D = queries.shape
        if features.dim() != 3 or features.shape[0] != B or features.shape[-1] != self.feature_dim:
            raise ValueError(f"resampler features must be ({B}, N_f, {self.feature_dim}), got "
                             f"{tuple(features.shape)}")
        context = self.feature_norm(self.feature_proj(features.to(queries.dtype)))   # (B, N_f, D)
        context = torch.cat([context, self.latents.expand(B, -1, -1)], dim=1)    # (B, N_f+M, D)
        heads = lambda t: t.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)   # noqa: E731
        q = heads(self.query(queries))                                          # (B, H, L, Dh)
        k, v = map(heads, self.key_value(context).chunk(2, dim=-1))             # (B, H, N, Dh)
        y = F.scaled_dot_product_attention(q, k, v)        # every token may read every feature
        return self.out(y.transpose(1, 2).reshape(B, L, D))                     # (B, L, D)


class InjectionExpert(nn.Module):
    """w * x + (1 - w) * Resampler(LN(x), F): the CLIP, face and noise experts."""

    def __init__(self, d_model: int, feature_dim: int, n_heads: int = 4, n_latents: int = 4,
                 init_x_weight: float = 0.5):
        super().__init__()
        if not 0.0 < init_x_weight < 1.0:
            raise ValueError(f"init_x_weight must be in (0, 1), got {init_x_weight}")
        self.resampler = Resampler(d_model, feature_dim, n_heads, n_latents)
        # softmax(mix_logits) = (w, 1 - w) with w = init_x_weight at the start.
        self.mix_logits = nn.Parameter(torch.tensor([math.log(init_x_weight),
                                                     math.log(1.0 - init_x_weight)]))

    @property
    def x_weight(self) -> Tensor:
        """w, the weight of the sequence's own stream (a 0-dim tensor, differentiable)."""
        return self.mix_logits.softmax(dim=0)[0]

    def forward(self, x: Tensor, normed: Tensor, features: Tensor) -> Tensor:
        """x (b, L, D) the raw stream, normed = LN(x) (the queries), features (b, N_f, D_f)."""
        w = self.x_weight.to(x.dtype)
        return w * x + (1.0 - w) * self.resampler(normed, features)
