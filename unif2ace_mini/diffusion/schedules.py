"""Noise schedules of the absorbing (masking) diffusion (DESIGN §6).

Notation, used across the whole `diffusion` package:

    t = 0 clean, t = 1 fully masked (or nearly, for the eps-truncated schedules);
    alpha(t)      = P(a token is still clean at time t) = exp(-sigma_bar(t));
    sigma_bar(t)  = the integrated rate;  dsigma(t) = sigma(t) = d sigma_bar / dt;
    r_t           = alpha / (1 - alpha) = 1 / expm1(sigma_bar)   (the absorbing ratio);
    elbo_weight   = w(t) = -alpha'(t) / (1 - alpha(t)) = sigma(t) * r_t.

Every method is vectorised over a tensor `t` and written in the closed form that stays accurate
at the ends (log1p / expm1 / tan identities), because the ELBO weight is singular at t = 0 and
sigma_bar is infinite at t = 1 for the schedules that mask everything.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def as_time(t, name: str = "t") -> Tensor:
    """`t` as a floating tensor (float64 for python numbers); ValueError outside [0, 1] or NaN."""
    if not isinstance(t, Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
    elif not t.is_floating_point():
        t = t.to(torch.float64)
    if t.numel() and (torch.isnan(t).any() or (t < 0).any() or (t > 1).any()):
        bad = t[(torch.isnan(t)) | (t < 0) | (t > 1)].flatten()[:3].tolist()
        raise ValueError(f"{name} must lie in [0, 1] (0 = clean, 1 = masked); got values {bad}")
    return t


def log_expm1(x: Tensor) -> Tensor:
    """log(exp(x) - 1) without overflow for large x or cancellation for small x (x > 0)."""
    large = x > 20
    small_safe = torch.where(large, torch.ones_like(x), x)
    return torch.where(large, x + torch.log1p(-torch.exp(-x)), torch.log(torch.expm1(small_safe)))


class Schedule:
    """Base class: subclasses give `sigma_bar`, `dsigma` and (for accuracy) `alpha`, `elbo_weight`."""

    name = "schedule"

    def sigma_bar(self, t) -> Tensor:
        raise NotImplementedError

    def dsigma(self, t) -> Tensor:
        raise NotImplementedError

    def alpha(self, t) -> Tensor:
        return torch.exp(-self.sigma_bar(t))

    def masked_fraction(self, t) -> Tensor:
        """1 - alpha(t): the probability that a token is masked at time t."""
        return -torch.expm1(-self.sigma_bar(t))

    def ratio(self, t) -> Tensor:
        """r_t = alpha / (1 - alpha) = 1 / expm1(sigma_bar); 0 where everything is masked."""
        return 1.0 / torch.expm1(self.sigma_bar(t))

    def log_ratio(self, t) -> Tensor:
        return -log_expm1(self.sigma_bar(t))

    def elbo_weight(self, t) -> Tensor:
        """w(t) = -alpha'/(1-alpha) = dsigma * r_t (inf at t = 0 for schedules that start clean)."""
        return self.dsigma(t) * self.ratio(t)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class LinearSchedule(Schedule):
    """alpha = 1 - t: masks every token by t = 1; w(t) = 1/t (MDLM's linear / RADD's default)."""

    name = "linear"

    def alpha(self, t):
        return 1.0 - as_time(t)

    def masked_fraction(self, t):
        return as_time(t).clone()

    def sigma_bar(self, t):
        return -torch.log1p(-as_time(t))

    def dsigma(self, t):
        return 1.0 / (1.0 - as_time(t))

    def ratio(self, t):
        t = as_time(t)
        return (1.0 - t) / t

    def elbo_weight(self, t):
        return 1.0 / as_time(t)


class CosineSchedule(Schedule):
    """Masked fraction sin(pi t / 2) = cos(pi/2 (1 - t)): Show-o / MaskGIT's ratio law.

    Show-o draws u ~ U(0,1) and masks a fraction cos(pi u / 2); with t = 1 - u this schedule has
    the same law for the masked fraction (Show-o rounds it to a count, we draw each token).
    """

    name = "cosine"

    def alpha(self, t):
        return 1.0 - torch.sin(0.5 * math.pi * as_time(t))

    def masked_fraction(self, t):
        return torch.sin(0.5 * math.pi * as_time(t))

    def sigma_bar(self, t):
        return -torch.log1p(-torch.sin(0.5 * math.pi * as_time(t)))

    def dsigma(self, t):
        # cos x / (1 - sin x) = tan(pi/4 + x/2): no 0/0 at t = 1
        return 0.5 * math.pi * torch.tan(0.25 * math.pi + 0.25 * math.pi * as_time(t))

    def ratio(self, t):
        x = 0.5 * math.pi * as_time(t)
        return (1.0 - torch.sin(x)) / torch.sin(x)

    def elbo_weight(self, t):
        return 0.5 * math.pi / torch.tan(0.5 * math.pi * as_time(t))


class LogLinearSchedule(Schedule):
    """SEDD's log-linear: sigma_bar = -log(1 - (1-eps) t), so alpha(1) = eps (never fully masked).

    w(t) = 1/t exactly as for linear; eps = 0 is the linear schedule. The eps truncation drops the
    end term at t = 1 (the leftover information I(x0; x1)), so an exact model can score below H.
    """

    name = "loglinear"

    def __init__(self, eps: float = 1e-3):
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"eps must lie in [0, 1), got {eps}")
        self.eps = float(eps)

    def alpha(self, t):
        return 1.0 - (1.0 - self.eps) * as_time(t)

    def masked_fraction(self, t):
        return (1.0 - self.eps) * as_time(t)

    def sigma_bar(self, t):
        return -torch.log1p(-(1.0 - self.eps) * as_time(t))

    def dsigma(self, t):
        return (1.0 - self.eps) / (1.0 - (1.0 - self.eps) * as_time(t))

    def ratio(self, t):
        t = as_time(t)
        return (1.0 - (1.0 - self.eps) * t) / ((1.0 - self.eps) * t)

    def elbo_weight(self, t):
        return 1.0 / as_time(t)


class GeometricSchedule(Schedule):
    """SEDD's geometric: sigma_bar = sigma_min^(1-t) sigma_max^t.

    Truncated at both ends: a fraction 1 - exp(-sigma_min) is already masked at t = 0 and
    exp(-sigma_max) is still clean at t = 1, so the NELBO misses both end terms.
    """

    name = "geometric"

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def sigma_bar(self, t):
        t = as_time(t)
        return self.sigma_min ** (1.0 - t) * self.sigma_max ** t

    def dsigma(self, t):
        return self.sigma_bar(t) * math.log(self.sigma_max / self.sigma_min)


SCHEDULES = {cls.name: cls for cls in (LinearSchedule, CosineSchedule, LogLinearSchedule,
                                       GeometricSchedule)}


def get_schedule(name: str | Schedule, **kwargs) -> Schedule:
    """A schedule by name ('linear', 'cosine', 'loglinear', 'geometric'), kwargs to its init."""
    if isinstance(name, Schedule):
        return name
    try:
        return SCHEDULES[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}") from None
