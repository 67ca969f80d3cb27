"""Forward masking: the absorbing process q_t(x_t | x_0), and Show-o's fixed-count masking.

Two ways to corrupt a clean sequence x0 (B, L):

- `forward_mask(x0, t, schedule, ...)`: each token independently becomes MASK with probability
  1 - alpha(t). This is the exact marginal of the absorbing CTMC, the one the ELBO, the score
  entropy and every likelihood statement are about.
- `showo_mask(x0, ...)`: Show-o's MGM corruption. Draw u ~ U(0,1), mask exactly
  k = max(1, round(cos(pi u / 2) L)) positions chosen uniformly. Its count law pi(k) is
  `showo_count_probs(L)`; it is *not* the ELBO's count law, which is why MGM is not a bound.

Given the count k, both put the k masks on a uniformly random subset: only the law of k differs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .schedules import Schedule, as_time


def check_tokens(x: Tensor, mask_id: int, name: str = "x0", allow_mask: bool = False) -> None:
    """ValueError unless x is an integer (B, L) tensor with ids != mask_id (unless allowed)."""
    if not isinstance(x, Tensor) or x.dtype not in (torch.int64, torch.int32, torch.int16,
                                                      torch.uint8, torch.int8):
        raise ValueError(f"{name} must be an integer tensor of token ids, got "
                         f"{getattr(x, 'dtype', type(x))}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (B, L), got {tuple(x.shape)}")
    if not isinstance(mask_id, int) or mask_id < 0:
        raise ValueError(f"mask_id must be a non-negative int, got {mask_id!r}")
    if not allow_mask and (x == mask_id).any():
        raise ValueError(f"{name} contains the mask id {mask_id}: clean data must not be masked")


def sample_t(batch_size: int, generator: torch.Generator | None = None, stratified: bool = True,
             device=None, dtype=torch.float32, power: float = 1.0) -> Tensor:
    """t ~ U(0,1) per sequence, (B,). Stratified (MDLM's low-discrepancy draw): one uniform
    offset plus B evenly spaced points, so every batch covers [0, 1) and the weight w(t)'s
    spread across the batch averages out.

    power != 1 returns u ** power instead (density `time_density`): power < 1 draws late, heavily
    masked times more often, like MaskGIT's concave mask-ratio laws."""
    check_time_power(power)
    if stratified:
        u0 = torch.rand((), generator=generator, device=device, dtype=dtype)
        steps = torch.arange(batch_size, device=device, dtype=dtype) / batch_size
        u = ((u0 + steps) % 1.0)[torch.randperm(batch_size, generator=generator, device=device)]
    else:
        u = torch.rand(batch_size, generator=generator, device=device, dtype=dtype)
    return u if power == 1 else u ** power


def check_time_power(power: float, name: str = "the time power") -> None:
    if not (math.isfinite(power) and power > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {power!r}")


def time_density(t: Tensor, power: float) -> Tensor:
    """q(t) = t^(1/power - 1) / power, the density of t = u ** power for u ~ U(0,1). Dividing a
    per-sequence term by q(t) makes its mean over such draws an unbiased estimate of its mean
    over t ~ U(0,1) (importance weighting)."""
    check_time_power(power)
    return as_time(t) ** (1.0 / power - 1.0) / power


def forward_mask(x0: Tensor, t: Tensor, schedule: Schedule, mask_id: int,
                 generator: torch.Generator | None = None) -> Tensor:
    """x_t ~ q_t(. | x0): every token independently masked with probability 1 - alpha(t).

    x0: (B, L) ids; t: (B,) in [0, 1]. Returns x_t (B, L)."""
    check_tokens(x0, mask_id)
    t = as_time(t)
    if t.shape != (x0.shape[0],):
        raise ValueError(f"t must have shape (B,) = ({x0.shape[0]},), got {tuple(t.shape)}")
    p_mask = schedule.masked_fraction(t).to(torch.float64)                  # (B,)
    u = torch.rand(x0.shape, generator=generator, device=x0.device, dtype=torch.float64)
    return torch.where(u < p_mask[:, None], torch.full_like(x0, mask_id), x0)


def mask_k_positions(k: Tensor, length: int, generator: torch.Generator | None = None) -> Tensor:
    """A (B, L) bool mask with exactly k[b] True entries at uniformly random positions.

    Ranking i.i.d. uniforms gives a uniform random permutation, and "rank < k" a uniform subset."""
    scores = torch.rand((k.shape[0], length), generator=generator, device=k.device)
    ranks = scores.argsort(dim=-1).argsort(dim=-1)                        # (B, L)
    return ranks < k[:, None]


class ShowoMasked(NamedTuple):
    xt: Tensor      # (B, L) ids with MASK at the chosen positions
    mask: Tensor    # (B, L) bool, True where masked
    k: Tensor       # (B,) number of masked tokens, in [1, L]


def showo_mask_count(u: Tensor, length: int) -> Tensor:
    """Show-o's count: k = max(1, round(cos(pi u / 2) * L)) for u in [0, 1]."""
    gamma = torch.cos(0.5 * math.pi * as_time(u, "u"))
    return torch.round(gamma * length).long().clamp(min=1, max=length)


def showo_mask(x0: Tensor, mask_id: int, generator: torch.Generator | None = None) -> ShowoMasked:
    """Show-o's MGM corruption: u ~ U(0,1), mask exactly k = max(1, round(cos(pi u/2) L))."""
    check_tokens(x0, mask_id)
    batch, length = x0.shape
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    k = showo_mask_count(u, length).to(x0.device)
    mask = mask_k_positions(k, length, generator)
    return ShowoMasked(torch.where(mask, torch.full_like(x0, mask_id), x0), mask, k)


def showo_count_probs(length: int) -> Tensor:
    """pi(k) for k = 1..L (float64, (L,)): the exact law of Show-o's masked count.

    k = j  <=>  cos(pi u/2) L in [j - 1/2, j + 1/2)  <=>  u in an arccos interval; k = 0 is
    clamped to 1."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    j = torch.arange(1, length + 1, dtype=torch.float64)
    lo = ((j - 0.5) / length).clamp(0, 1)
    hi = ((j + 0.5) / length).clamp(0, 1)
    lo[0] = 0.0                                                           # k = 0 -> 1
    return (torch.arccos(lo) - torch.arccos(hi)) * (2.0 / math.pi)


def elbo_count_probs(length: int, schedule: Schedule, n_quad: int = 256) -> Tensor:
    """P(k masked) under t ~ U(0,1), x_t ~ q_t, for k = 0..L (float64, (L+1,)); by quadrature."""
    from .toy import gauss_legendre_01

    t, wq = gauss_legendre_01(n_quad)
    m = schedule.masked_fraction(t)                                        # (Q,)
    k = torch.arange(length + 1, dtype=torch.float64)
    log_binom = (math.lgamma(length + 1.0) - torch.lgamma(k + 1)
                 - torch.lgamma(length - k + 1))
    pk = torch.exp(log_binom + torch.xlogy(k, m[:, None]) + torch.xlogy(length - k, 1 - m[:, None]))
    return (wq[:, None] * pk).sum(0)
