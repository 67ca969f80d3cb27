"""A tiny bidirectional transformer denoiser and the loss variants of the D3Diff ablation.

The denoiser is time-independent (no t input), as in Show-o and RADD: for the absorbing process
the optimal prediction p0(x^i | unmasked tokens) does not depend on t, so one forward pass serves
the MGM term, the score term and every sampler.

Loss variants (`VARIANTS`), all reading one forward pass on one corrupted batch:
    mgm            Show-o: fixed-count masking, CE over masked tokens (the paper's "mask-only")
    score_tied     score entropy only, tied head (= MDLM's NELBO)
    score_untied   score entropy only, SEDD's unnormalised head
    d3diff_<lam>   MGM + lam * score entropy (tied), one shared draw (see `d3diff_loss`)
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .losses import d3diff_loss, drop_mask_column, masked_ce_loss
from .masking import forward_mask, sample_t, showo_mask
from .schedules import Schedule


def sinusoidal_positions(length: int, d_model: int) -> Tensor:
    """Transformer sinusoids, (L, d). As the *init* of learned positions they let attention find
    neighbours at once: from random init the toy needs ~600 more steps to discover locality."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = 10.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    table = torch.zeros(length, d_model)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return table


class TinyDenoiser(nn.Module):
    """Token + position embeddings, pre-norm bidirectional encoder, logits over the vocabulary."""

    def __init__(self, vocab_size: int, length: int, d_model: int = 64, n_layers: int = 2,
                 n_heads: int = 4):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(sinusoidal_positions(length, d_model))
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        nn.init.zeros_(self.head.weight)      # logits start at 0: uniform p, SEDD-scaled score r_t
        nn.init.zeros_(self.head.bias)

    def forward(self, xt: Tensor) -> Tensor:                                 # (B, L) -> (B, L, V)
        h = self.tok(xt) + self.pos[: xt.shape[1]]
        return self.head(self.norm(self.encoder(h)))


def variant_loss(variant: str, model: nn.Module, x0: Tensor, schedule: Schedule, mask_id: int,
                 generator: torch.Generator) -> Tensor:
    """One training loss of the ablation for a clean batch x0 (B, L)."""
    if variant == "mgm":
        xt, mask, _ = showo_mask(x0, mask_id, generator)
        return masked_ce_loss(drop_mask_column(model(xt), mask_id), x0, mask)
    t = sample_t(x0.shape[0], generator)
    xt = forward_mask(x0, t, schedule, mask_id, generator)
    if variant.startswith("score_"):
        head = variant.removeprefix("score_")
        parts = d3diff_loss(model(xt), xt, x0, t, schedule, mask_id, 0.0, head, return_parts=True)
        return parts.score / x0.shape[1]                                     # per token: same lr scale
    if variant.startswith("d3diff_"):
        lam = float(variant.removeprefix("d3diff_"))
        return d3diff_loss(model(xt), xt, x0, t, schedule, mask_id, lambda_score=lam)
    raise ValueError(f"unknown variant {variant!r}; e.g. 'mgm', 'score_tied', 'd3diff_0.01'")


@dataclass(frozen=True)
class ToyTrainConfig:
    steps: int = 1000
    max_seconds: float = 60.0
    batch_size: int = 64
    lr: float = 3e-3              # constant after a short warm-up
    warmup: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    seed: int = 0


# Sizes of the toy ablation per profile (notebook 04). quick: ~7 s per model on 2 quiet cores
# (12 ms/step; ~25 s on a shared machine); step-bound, max_seconds is a safety net.
TOY_SIZES = {
    "quick": ToyTrainConfig(steps=600, max_seconds=400.0),
    "cpu": ToyTrainConfig(steps=4000, max_seconds=600.0, d_model=128, n_layers=3),
    "gpu": ToyTrainConfig(steps=8000, max_seconds=600.0, batch_size=256, d_model=128, n_layers=4),
    "paper": ToyTrainConfig(steps=8000, max_seconds=600.0, batch_size=256, d_model=128, n_layers=4),
}


def train_denoiser(variant: str, data: Tensor, vocab_size: int, mask_id: int,
                   schedule: Schedule, config: ToyTrainConfig) -> tuple[TinyDenoiser, dict]:
    """Train a TinyDenoiser on `data` (N, L) with one loss variant. Stops on steps or seconds.

    Returns the model (eval mode) and a log {'loss': [...], 'steps': n, 'seconds': s}."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = TinyDenoiser(vocab_size, data.shape[1], config.d_model, config.n_layers,
                         config.n_heads)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / config.warmup))
    losses, start, step = [], time.perf_counter(), 0
    model.train()
    for step in range(1, config.steps + 1):
        idx = torch.randint(0, data.shape[0], (config.batch_size,), generator=generator)
        loss = variant_loss(variant, model, data[idx], schedule, mask_id, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        warm.step()
        losses.append(float(loss.detach()))
        if time.perf_counter() - start > config.max_seconds:
            break
    model.eval()
    from .. import runtime
    runtime.warn_if_time_limited(f"toy denoiser ({variant})", step, config.steps,
                                 config.max_seconds)
    return model, {"loss": losses, "steps": step, "seconds": time.perf_counter() - start}


def load_or_train(variant: str, data: Tensor, vocab_size: int, mask_id: int, schedule: Schedule,
                  config: ToyTrainConfig, cache_key: str) -> tuple[TinyDenoiser, dict]:
    """`train_denoiser` through the artifact cache: same (variant, config, key) -> same weights."""
    from .. import runtime

    recipe = dataclasses.replace(config, max_seconds=0.0)       # the time limit is not a recipe
    tag = hashlib.sha1(repr((variant, recipe, cache_key, repr(schedule))).encode()).hexdigest()[:12]
    path = runtime.cache_dir("diffusion_toy") / f"{variant}-{tag}.safetensors"
    meta = runtime.load_safetensors(path)[1] if path.is_file() else None
    if meta is not None and meta["log"]["steps"] == config.steps:   # reuse complete runs only
        tensors, meta = runtime.load_safetensors(path)
        model = TinyDenoiser(vocab_size, data.shape[1], config.d_model, config.n_layers,
                             config.n_heads)
        model.load_state_dict(tensors)
        return model.eval(), dict(meta["log"], cached=True)
    model, log = train_denoiser(variant, data, vocab_size, mask_id, schedule, config)
    runtime.save_safetensors(model.state_dict(), path, {"log": log})
    return model, dict(log, cached=False)


def as_denoiser(model: nn.Module):
    """Wrap a model as a no-grad `denoiser(xt) -> logits` callable for samplers / likelihood."""
    @torch.no_grad()
    def denoiser(xt: Tensor) -> Tensor:
        return model(xt)
    return denoiser
