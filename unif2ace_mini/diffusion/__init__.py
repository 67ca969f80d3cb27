"""Masked (absorbing) discrete diffusion and UniF2ace's D3Diff loss (DESIGN §6, §7).

schedules   alpha, sigma_bar, dsigma, ELBO weight: linear, cosine, log-linear, geometric
masking     forward masking q_t, Show-o's fixed-count masking and its count law pi(k)
losses      score entropy (SEDD), MGM (Show-o), NELBO integrand (MDLM), D3Diff
likelihood  any-order NELBO estimate in bits per token; MGM re-weighted into a bound
samplers    MaskGIT (+ guidance), exact ancestral with caching, SEDD Euler
toy         absorbing CTMC, joint tables and Markov chains with exact conditionals
denoiser    a tiny bidirectional transformer and its training loop, for the toy experiments
"""

from .likelihood import NelboEstimate, nelbo_any_order, nelbo_bits_per_token, reweighted_mgm
from .losses import (D3DiffLoss, d3diff_loss, denoiser_log_probs, drop_mask_column,
                     masked_ce_loss, nelbo_integrand, score_entropy, tied_log_score,
                     untied_log_score, untied_penalty)
from .masking import (ShowoMasked, elbo_count_probs, forward_mask, mask_k_positions, sample_t,
                      showo_count_probs, showo_mask, showo_mask_count, time_density)
from .samplers import SampleResult, ancestral_sample, euler_sample, maskgit_sample
from .schedules import (CosineSchedule, GeometricSchedule, LinearSchedule, LogLinearSchedule,
                        Schedule, as_time, get_schedule, log_expm1)
from .toy import JointTable, MarkovChain

__all__ = [
    "Schedule", "LinearSchedule", "CosineSchedule", "LogLinearSchedule", "GeometricSchedule",
    "get_schedule", "as_time", "log_expm1",
    "sample_t", "time_density", "forward_mask", "showo_mask", "showo_mask_count",
    "showo_count_probs", "elbo_count_probs", "mask_k_positions", "ShowoMasked",
    "score_entropy", "masked_ce_loss", "nelbo_integrand", "d3diff_loss", "D3DiffLoss",
    "tied_log_score", "untied_log_score", "untied_penalty", "denoiser_log_probs",
    "drop_mask_column",
    "nelbo_any_order", "nelbo_bits_per_token", "NelboEstimate", "reweighted_mgm",
    "maskgit_sample", "ancestral_sample", "euler_sample", "SampleResult",
    "JointTable", "MarkovChain",
]
