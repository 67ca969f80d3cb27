"""Samplers for masked diffusion (DESIGN §7). Each takes `denoiser(xt) -> logits (B, L, V)`.

- `maskgit_sample`: Show-o / MaskGIT confidence decoding, with classifier-free guidance. Fast,
  but it re-masks by confidence, so it does not sample the model's distribution.
- `ancestral_sample`: the exact reverse step of the absorbing process (MDLM/RADD): a masked token
  unmasks with probability (alpha_s - alpha_t)/(1 - alpha_t) to a draw from p_theta. Exact up to
  tokens unmasked in the same step being drawn independently (vanishes as steps grow). Because
  the denoiser is time-independent, rows whose x_t did not change reuse their logits (RADD's
  caching): at most L network calls per sequence whatever the step count.
- `euler_sample`: SEDD's Euler step, P(M -> v) = dt * sigma(t) * s_v, from the score head.

Every sampler returns the tokens and how many network calls it made, so quality can be plotted
against cost. Randomness comes only from the torch.Generator passed in.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .losses import denoiser_log_probs, drop_mask_column
from .schedules import LinearSchedule, Schedule

Denoiser = Callable[[Tensor], Tensor]


class SampleResult(NamedTuple):
    tokens: Tensor             # (B, L) sampled ids, no MASK left
    network_calls: int         # batched denoiser invocations (a guided step counts 2)
    calls_per_sample: float    # denoiser rows evaluated per sequence (what caching saves)


def gumbel_noise(shape, generator: torch.Generator | None, device=None) -> Tensor:
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    return -torch.log(-torch.log(u.clamp(1e-300, 1.0 - 1e-16)))


def sample_categorical(log_probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw per row from softmax(log_probs) by the Gumbel-max trick, (...)."""
    g = gumbel_noise(log_probs.shape, generator, log_probs.device)
    return (log_probs.double() + g).argmax(-1)


def _start(batch_size: int, length: int, mask_id: int, xt: Tensor | None, device) -> Tensor:
    if xt is None:
        return torch.full((batch_size, length), mask_id, dtype=torch.long, device=device)
    if xt.dim() != 2:
        raise ValueError(f"xt must have shape (B, L), got {tuple(xt.shape)}")
    return xt.clone()


def _check_steps(num_steps: int) -> None:
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")


def maskgit_sample(denoiser: Denoiser, batch_size: int, length: int, mask_id: int,
                   num_steps: int = 8, temperature: float = 1.0, guidance_scale: float = 0.0,
                   uncond_denoiser: Denoiser | None = None,
                   generator: torch.Generator | None = None, xt: Tensor | None = None,
                   device=None) -> SampleResult:
    """Show-o's MaskGIT decoding. Step s = 0..S-1: sample every masked position from p_theta;
    keep n = floor(L cos(pi/2 (s+1)/S)) of them masked, clamped to [1, unknown - 1]: the least
    confident by log p(sampled) + temperature (1 - s/S) Gumbel. The last step keeps everything.
    Guidance on logits: (1 + w) cond - w uncond (w = guidance_scale)."""
    _check_steps(num_steps)
    if guidance_scale != 0.0 and uncond_denoiser is None:
        raise ValueError("guidance_scale != 0 needs an uncond_denoiser")
    xt = _start(batch_size, length, mask_id, xt, device)
    calls = 0
    for step in range(num_steps):
        logits = denoiser(xt)                                                # (B, L, V)
        calls += 1
        if guidance_scale != 0.0:
            logits = (1 + guidance_scale) * logits - guidance_scale * uncond_denoiser(xt)
            calls += 1
        log_p = denoiser_log_probs(logits, mask_id)                          # (B, L, V)
        unknown = xt == mask_id                                              # (B, L)
        sampled = torch.where(unknown, sample_categorical(log_p, generator), xt)
        if step == num_steps - 1:
            xt = sampled
            break
        confidence = log_p.gather(-1, sampled[..., None]).squeeze(-1).double()
        confidence = confidence + temperature * (1 - step / num_steps) * gumbel_noise(
            confidence.shape, generator, confidence.device)
        confidence = torch.where(unknown, confidence, math.inf)              # never re-mask known
        n_keep = math.floor(length * math.cos(0.5 * math.pi * (step + 1) / num_steps))
        n_keep = (unknown.sum(-1) - 1).clamp(max=n_keep).clamp(min=1)        # (B,)
        rank = confidence.argsort(-1).argsort(-1)                            # 0 = least confident
        xt = torch.where(rank < n_keep[:, None], mask_id, sampled)
    factor = 2 if guidance_scale != 0.0 else 1
    return SampleResult(xt, calls, float(num_steps * factor))


class _CachedDenoiser:
    """Re-evaluates only the rows whose input changed (RADD's caching); counts calls and rows.

    Keeps log p_theta (the mask column dropped) and the raw logits of the last evaluation.
    A denoiser whose rows are not interchangeable (each row has its own prompt) sets
    `takes_rows = True` and is called as denoiser(x_t[stale], rows=stale)."""

    def __init__(self, denoiser: Denoiser, mask_id: int):
        self.denoiser, self.mask_id = denoiser, mask_id
        self.logits = self.log_p = None
        self.calls = self.rows = 0

    def __call__(self, xt: Tensor, stale: Tensor) -> tuple[Tensor, Tensor]:
        if self.logits is None:
            stale = torch.ones_like(stale)
        if stale.any():
            if getattr(self.denoiser, "takes_rows", False):
                fresh = self.denoiser(xt[stale], rows=stale).double()       # (b, L, V)
            else:
                fresh = self.denoiser(xt[stale]).double()
            fresh_log_p = denoiser_log_probs(fresh, self.mask_id)
            if self.logits is None:
                self.logits, self.log_p = fresh, fresh_log_p
            else:   # in place: callers use the returned tensors within one step only
                self.logits[stale], self.log_p[stale] = fresh, fresh_log_p
            self.calls += 1
            self.rows += int(stale.sum())
        return self.logits, self.log_p


def ancestral_sample(denoiser: Denoiser, batch_size: int, length: int, mask_id: int,
                     num_steps: int = 64, schedule: Schedule | None = None,
                     generator: torch.Generator | None = None, xt: Tensor | None = None,
                     cache: bool = True, device=None) -> SampleResult:
    """Exact reverse steps t -> s = t - 1/S of the absorbing process (MDLM / RADD).

    A masked token unmasks with probability (alpha_s - alpha_t)/(1 - alpha_t), to a draw from
    p_theta(. | x_t); the last step (s = 0) unmasks everything. With `cache`, a row's logits are
    recomputed only after one of its tokens changed (without it: one call per step)."""
    _check_steps(num_steps)
    schedule = schedule or LinearSchedule()
    xt = _start(batch_size, length, mask_id, xt, device)
    net = _CachedDenoiser(denoiser, mask_id)
    stale = torch.ones(xt.shape[0], dtype=torch.bool, device=xt.device)
    times = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    for t, s in zip(times[:-1], times[1:]):
        _, log_p = net(xt, stale if cache else torch.ones_like(stale))       # (B, L, V)
        alpha_t, alpha_s = schedule.alpha(t), schedule.alpha(s)
        p_unmask = 1.0 if s == 0 else float((alpha_s - alpha_t) / (1 - alpha_t))
        u = torch.rand(xt.shape, generator=generator, dtype=torch.float64, device=xt.device)
        unmask = (xt == mask_id) & (u < p_unmask)                            # (B, L)
        xt = xt.clone()
        xt[unmask] = sample_categorical(log_p[unmask], generator)            # draw only there
        stale = unmask.any(-1) & (xt == mask_id).any(-1)                     # done rows: no call
    return SampleResult(xt, net.calls, net.rows / xt.shape[0])


def euler_sample(denoiser: Denoiser, batch_size: int, length: int, mask_id: int,
                 num_steps: int = 64, schedule: Schedule | None = None, score_head: str = "tied",
                 eps: float = 1e-5, generator: torch.Generator | None = None,
                 xt: Tensor | None = None, device=None) -> SampleResult:
    """SEDD's Euler sampler on the absorbing graph, t from 1 to eps in S steps.

    From MASK, jump to v with probability dt * sigma(t) * s_v(t), stay masked otherwise.
    s_v = r_t * p_theta(v) (tied) or r_t * exp(logits_v)/(V-1) (untied), so sigma * s_v =
    w(t) * (p_v or exp(logits_v)/(V-1)), finite at t = 1. Drawn in two stages with the same law:
    move with probability min(1, dt * w * sum_v s_v / r), then v proportional to s_v. Tokens still
    masked at t = eps are drawn from p_theta in a final denoising step (one more call)."""
    _check_steps(num_steps)
    if score_head not in ("tied", "untied"):
        raise ValueError(f"score_head must be 'tied' or 'untied', got {score_head!r}")
    schedule = schedule or LinearSchedule()
    xt = _start(batch_size, length, mask_id, xt, device)
    net = _CachedDenoiser(denoiser, mask_id)
    stale = torch.ones(xt.shape[0], dtype=torch.bool, device=xt.device)
    times = torch.linspace(1.0, eps, num_steps + 1, dtype=torch.float64)
    for t, s in zip(times[:-1], times[1:]):
        logits, log_p = net(xt, stale)                                       # (B, L, V)
        if score_head == "tied":
            total_rate = torch.ones(xt.shape, dtype=torch.float64, device=xt.device)
        else:   # Z = sum_v exp(logits_v)/(V-1): the untied head's total jump rate / w(t)
            z = drop_mask_column(logits, mask_id).logsumexp(-1) - math.log(logits.shape[-1] - 1)
            total_rate = z.exp()
        p_move = ((t - s) * schedule.elbo_weight(t) * total_rate).clamp(max=1.0)   # (B, L)
        u = torch.rand(xt.shape, generator=generator, dtype=torch.float64, device=xt.device)
        move = (xt == mask_id) & (u < p_move)
        xt = xt.clone()
        xt[move] = sample_categorical(log_p[move], generator)                # v ~ s_v / sum s
        stale = move.any(-1) & (xt == mask_id).any(-1)
    if (xt == mask_id).any():                                                # final denoise
        _, log_p = net(xt, stale)
        left = xt == mask_id
        xt[left] = sample_categorical(log_p[left], generator)
    return SampleResult(xt, net.calls, net.rows / xt.shape[0])
