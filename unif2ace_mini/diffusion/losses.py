"""Losses of masked discrete diffusion: MGM (Show-o), score entropy (SEDD), NELBO (MDLM), D3Diff.

Conventions shared by every function here:

    logits     (B, L, V)  one forward pass of a time-independent denoiser on x_t; V includes the
                          MASK column, which the diffusion losses drop (the model never predicts
                          MASK: MDLM's SUBS parameterisation).
    xt, x0     (B, L)     corrupted and clean ids; x0 never contains mask_id.
    t          (B,)       diffusion time in [0, 1]; sigma_bar (B,) its integrated noise.

The bridge (RADD): at a masked position the exact concrete score is r_t * p0(v | unmasked), so the
tied head `log s = log p_theta - log expm1(sigma_bar)` turns SEDD's score entropy into
r_t * cross-entropy, and `dsigma * sum DSE` into MDLM's NELBO integrand `w(t) * sum CE`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .masking import check_tokens
from .schedules import Schedule, as_time, log_expm1


def check_logits(logits: Tensor, xt: Tensor, x0: Tensor, mask_id: int) -> None:
    """ValueError naming the problem: shapes (B, L, V) / (B, L) / (B, L), mask_id in [0, V)."""
    if not isinstance(logits, Tensor) or logits.dim() != 3 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor of shape (B, L, V), got "
                         f"{tuple(getattr(logits, 'shape', ()))}")
    check_tokens(x0, mask_id, "x0")
    check_tokens(xt, mask_id, "xt", allow_mask=True)
    if xt.shape != x0.shape or logits.shape[:2] != x0.shape:
        raise ValueError(f"shape mismatch: logits {tuple(logits.shape)}, xt {tuple(xt.shape)}, "
                         f"x0 {tuple(x0.shape)}; need (B, L, V), (B, L), (B, L)")
    vocab = logits.shape[-1]
    if mask_id >= vocab:
        raise ValueError(f"mask_id {mask_id} is out of range for a vocabulary of {vocab} logits")
    if (x0 >= vocab).any() or (x0 < 0).any():
        raise ValueError(f"x0 holds ids outside [0, {vocab})")
    if ((xt != x0) & (xt != mask_id)).any():
        raise ValueError("xt differs from x0 at a position that is not masked: not an absorbing "
                         "corruption of x0")


def _check_batch_vector(v: Tensor, batch: int, name: str) -> None:
    if v.shape != (batch,):
        raise ValueError(f"{name} must have shape (B,) = ({batch},), got {tuple(v.shape)}")


def drop_mask_column(logits: Tensor, mask_id: int) -> Tensor:
    """logits with the MASK column at -inf: p_theta puts no mass on MASK."""
    return logits.index_fill(-1, torch.tensor([mask_id], device=logits.device), float("-inf"))


def denoiser_log_probs(logits: Tensor, mask_id: int) -> Tensor:
    """log p_theta(x0^i = v | x_t), (B, L, V), normalised over the V-1 real tokens."""
    return drop_mask_column(logits, mask_id).log_softmax(-1)


def tied_log_score(logits: Tensor, sigma_bar: Tensor, mask_id: int) -> Tensor:
    """RADD's tied head: log s_v = log p_theta(v) - log expm1(sigma_bar). (B, L, V)."""
    return denoiser_log_probs(logits, mask_id) - log_expm1(sigma_bar)[:, None, None]


def untied_log_score(logits: Tensor, sigma_bar: Tensor, mask_id: int) -> Tensor:
    """SEDD's unnormalised head: log s_v = logits_v - log expm1(sigma_bar) - log(V-1).

    The -log(V-1) is SEDD's init scaling (scores sum to r_t when the logits start near 0).
    Z = sum_v exp(logits_v) / (V-1) is free, and the score entropy pays w(t)(Z - 1 - log Z)."""
    n_real = logits.shape[-1] - 1
    shift = log_expm1(sigma_bar)[:, None, None] + math.log(n_real)
    return drop_mask_column(logits, mask_id) - shift


def score_entropy(log_score: Tensor, xt: Tensor, x0: Tensor, sigma_bar: Tensor,
                  mask_id: int) -> Tensor:
    """SEDD's denoising score entropy on the absorbing graph, per position, (B, L).

    At a masked position: sum_{v != MASK} exp(log s_v) - r log s_{x0} + r (log r - 1), with
    r = 1/expm1(sigma_bar); 0 where xt is not masked. The MASK column of log_score is ignored.
    No dsigma factor: the diffusion loss is `dsigma * score_entropy(...).sum(-1)`.
    This is the literal formula; for training use `d3diff_loss`, whose tied form is stable."""
    check_logits(log_score, xt, x0, mask_id)
    sigma_bar = torch.as_tensor(sigma_bar, dtype=log_score.dtype, device=log_score.device)
    _check_batch_vector(sigma_bar, x0.shape[0], "sigma_bar")
    if (sigma_bar < 0).any() or torch.isnan(sigma_bar).any():
        raise ValueError("sigma_bar must be >= 0")
    masked = xt == mask_id                                                    # (B, L)
    r = torch.where(masked, (1.0 / torch.expm1(sigma_bar))[:, None], 0.0)      # (B, L)
    pos = drop_mask_column(log_score, mask_id).exp().sum(-1)                  # (B, L)
    neg = r * log_score.gather(-1, x0[..., None]).squeeze(-1)                 # (B, L)
    const = torch.xlogy(r, r) - r                                             # r (log r - 1)
    return torch.where(masked, pos - neg + const, 0.0)


def masked_ce_loss(logits: Tensor, x0: Tensor, mask: Tensor) -> Tensor:
    """Show-o's MGM loss: mean cross-entropy over masked positions (unshifted), a scalar.

    The mean runs over all masked tokens of the batch (Show-o's ignore_index reduction), so a
    sequence with k masks weighs k times more. 0 when nothing is masked (Show-o would give NaN)."""
    if logits.dim() != 3 or logits.shape[:2] != x0.shape or mask.shape != x0.shape:
        raise ValueError(f"shape mismatch: logits {tuple(logits.shape)}, x0 {tuple(x0.shape)}, "
                         f"mask {tuple(mask.shape)}; need (B, L, V), (B, L), (B, L)")
    ce = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")       # (B, L)
    n_masked = mask.sum()
    return torch.where(mask, ce, 0.0).sum() / n_masked.clamp(min=1)


def _weighted_masked_sum(per_position: Tensor, masked: Tensor, weight: Tensor) -> Tensor:
    """weight_b * sum_{masked i} per_position_{b,i}, (B,); 0 (not inf*0) where nothing is masked."""
    total = torch.where(masked, per_position, 0.0).sum(-1)                    # (B,)
    any_masked = masked.any(-1)
    safe_w = torch.where(any_masked, weight, torch.zeros_like(weight))
    return torch.where(any_masked, safe_w * total, torch.zeros_like(total))


def nelbo_integrand(logits: Tensor, xt: Tensor, x0: Tensor, t: Tensor, schedule: Schedule,
                    mask_id: int) -> Tensor:
    """w(t) * sum_{masked i} -log p_theta(x0^i | x_t), (B,), in nats per sequence.

    E_{t ~ U(0,1), x_t ~ q_t}[this] is the continuous-time NELBO (MDLM), >= -log p(x0) in
    expectation over x0, with equality of E_x0 to the entropy H for exact conditionals."""
    check_logits(logits, xt, x0, mask_id)
    t = as_time(t).to(device=logits.device, dtype=logits.dtype)
    _check_batch_vector(t, x0.shape[0], "t")
    ce = -denoiser_log_probs(logits, mask_id).gather(-1, x0[..., None]).squeeze(-1)   # (B, L)
    return _weighted_masked_sum(ce, xt == mask_id, schedule.elbo_weight(t))


class D3DiffLoss(NamedTuple):
    loss: Tensor    # scalar: mgm + lambda_score * score
    mgm: Tensor     # scalar: Show-o's CE over masked tokens (nats / token)
    score: Tensor   # scalar: mean over the batch of dsigma * sum DSE (nats / sequence)


def untied_penalty(logits: Tensor, mask_id: int) -> Tensor:
    """Z - 1 - log Z >= 0 per position, (B, L), with Z = sum_{v != MASK} exp(logits_v) / (V-1)."""
    log_z = drop_mask_column(logits, mask_id).logsumexp(-1) - math.log(logits.shape[-1] - 1)
    return torch.expm1(log_z) - log_z


def d3diff_loss(logits: Tensor, xt: Tensor, x0: Tensor, t: Tensor, schedule: Schedule,
                mask_id: int, lambda_score: float = 0.01, score_head: str = "tied",
                return_parts: bool = False) -> Tensor | D3DiffLoss:
    """UniF2ace's D3Diff: L = MGM + lambda_score * (dsigma * sum_positions DSE), one forward pass.

    How the two terms share a draw (our choice; the paper does not say): one t ~ U(0,1) per
    sequence and x_t ~ q_t (`forward_mask`), one forward pass on x_t, and both terms read the same
    logits. The score term then is an unbiased one-sample estimate of SEDD's objective (for the
    tied head exactly the NELBO), so the bound it carries is real. The MGM term is Show-o's
    CE-over-masked-tokens; with the cosine schedule its masked *fraction* has Show-o's law
    cos(pi u / 2), only the count is Binomial(L, fraction) instead of round(fraction * L).
    We do not map Show-o's rounded count k back to a t: with its k >= 1 clamp, the ELBO weight
    w(t) ~ 1/t near t = 0 would give that single mask an infinite expected weight.

    Score heads, both computed in the stable cross-entropy form instead of the DSE formula
    (identical in exact arithmetic; in float32 the DSE form loses the result to cancellation
    between r log r terms and turns into inf * 0 = NaN as t -> 1):
      tied   : dsigma * DSE = w(t) * CE                       (log s = log p - log expm1 sigma)
      untied : dsigma * DSE = w(t) * (CE + Z - 1 - log Z)     (SEDD's unnormalised head)

    lambda_score is named so on purpose: `alpha` is the schedule. The score term is in nats per
    sequence (SEDD's sum over positions), MGM in nats per token.
    """
    if score_head not in ("tied", "untied"):
        raise ValueError(f"score_head must be 'tied' or 'untied', got {score_head!r}")
    if not lambda_score >= 0:
        raise ValueError(f"lambda_score must be >= 0, got {lambda_score}")
    check_logits(logits, xt, x0, mask_id)
    t = as_time(t).to(device=logits.device, dtype=logits.dtype)
    _check_batch_vector(t, x0.shape[0], "t")
    masked = xt == mask_id                                                    # (B, L)
    real_logits = drop_mask_column(logits, mask_id)                           # (B, L, V)
    ce = F.cross_entropy(real_logits.transpose(1, 2), x0, reduction="none")  # (B, L)
    mgm = torch.where(masked, ce, 0.0).sum() / masked.sum().clamp(min=1)
    per_position = ce if score_head == "tied" else ce + untied_penalty(logits, mask_id)
    score = _weighted_masked_sum(per_position, masked, schedule.elbo_weight(t)).mean()
    loss = mgm + lambda_score * score
    return D3DiffLoss(loss, mgm, score) if return_parts else loss
