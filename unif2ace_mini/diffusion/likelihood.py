"""Likelihood evaluation of masked diffusion models: a low-variance NELBO in bits per token.

For a time-independent denoiser the continuous-time NELBO does not depend on the schedule
(integrate w(t) against the Binomial law of the masked count: each count k gets weight 1/k):

    NELBO(x0) = sum_{k=1}^{L} E_{S uniform, |S| = k} [ mean_{i in S} -log p_theta(x0^i | x0 masked on S) ].

`nelbo_any_order` estimates it with every k at once along one random order (RADD's any-order /
k-DCE form): mask the first k tokens of a random permutation for k = 1..L. Each term is unbiased
for its k, and there is no 1/t weight to blow up the variance. L network rows per sequence.

`reweighted_mgm` shows why Show-o's MGM is not a bound: its count k follows pi(k), not the
ELBO's law; dividing each sequence's mean CE by pi(k) restores an unbiased NELBO estimate.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .losses import check_logits, denoiser_log_probs
from .masking import check_tokens, showo_count_probs
LOG2 = math.log(2.0)


class NelboEstimate(NamedTuple):
    bits_per_token: float    # mean over sequences
    stderr: float            # standard error of that mean (over sequences)
    nats_per_sequence: Tensor  # (B,) per-sequence estimates


@torch.no_grad()
def nelbo_any_order(denoiser: Callable[[Tensor], Tensor], x0: Tensor, mask_id: int,
                    generator: torch.Generator | None = None, n_orders: int = 1,
                    rows_per_call: int = 4096) -> Tensor:
    """Per-sequence NELBO estimate in nats, (B,): sum over k = 1..L of the mean CE over the
    first k positions of a random order, averaged over `n_orders` orders."""
    check_tokens(x0, mask_id)
    batch, length = x0.shape
    total = torch.zeros(batch, dtype=torch.float64, device=x0.device)
    k = torch.arange(1, length + 1, device=x0.device)                          # (L,)
    for _ in range(n_orders):
        ranks = torch.rand((batch, length), generator=generator).argsort(-1).argsort(-1)
        masks = ranks.to(x0.device)[:, None, :] < k[None, :, None]            # (B, L_k, L)
        x0_rep = x0[:, None, :].expand(batch, length, length).reshape(-1, length)
        xt = torch.where(masks.reshape(-1, length), mask_id, x0_rep)           # (B*L, L)
        ce_sum = torch.cat([_masked_ce_sum(denoiser, xt[i:i + rows_per_call],
                                           x0_rep[i:i + rows_per_call], mask_id)
                            for i in range(0, xt.shape[0], rows_per_call)])     # (B*L,)
        mean_ce = ce_sum.view(batch, length) / k[None]                         # (B, L_k)
        total += mean_ce.sum(-1)
    return total / n_orders


def _masked_ce_sum(denoiser, xt: Tensor, x0: Tensor, mask_id: int) -> Tensor:
    logits = denoiser(xt)                                                      # (b, L, V)
    ce = -denoiser_log_probs(logits.double(), mask_id).gather(-1, x0[..., None]).squeeze(-1)
    return torch.where(xt == mask_id, ce, 0.0).sum(-1)


def nelbo_bits_per_token(denoiser: Callable[[Tensor], Tensor], x0: Tensor, mask_id: int,
                         generator: torch.Generator | None = None, n_orders: int = 1,
                         rows_per_call: int = 4096) -> NelboEstimate:
    """`nelbo_any_order` in bits per token, with its standard error over sequences."""
    nats = nelbo_any_order(denoiser, x0, mask_id, generator, n_orders, rows_per_call)
    bits = nats / (LOG2 * x0.shape[1])
    stderr = float(bits.std() / bits.numel() ** 0.5) if bits.numel() > 1 else float("nan")
    return NelboEstimate(float(bits.mean()), stderr, nats)


def reweighted_mgm(logits: Tensor, xt: Tensor, x0: Tensor, mask_id: int) -> Tensor:
    """Per-sequence mean masked CE divided by Show-o's pi(k), (B,) nats.

    For x_t from `showo_mask`, E[this] = sum_k m(k) = the NELBO, while Show-o's loss averages
    m(k) with weights pi(k) (per sequence) or k pi(k) (per token): re-weightings, not bounds."""
    check_logits(logits, xt, x0, mask_id)
    masked = xt == mask_id
    k = masked.sum(-1)                                                          # (B,)
    if (k == 0).any():
        raise ValueError("every sequence needs at least one masked token (Show-o's k >= 1)")
    ce = -denoiser_log_probs(logits, mask_id).gather(-1, x0[..., None]).squeeze(-1)   # (B, L)
    mean_ce = torch.where(masked, ce, 0.0).sum(-1) / k
    pi = showo_count_probs(x0.shape[1]).to(device=logits.device, dtype=logits.dtype)
    return mean_ce / pi[k - 1]
