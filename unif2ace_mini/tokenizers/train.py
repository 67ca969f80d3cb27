"""Training an image tokenizer: reconstruction + VQ losses, k-means init, dead-code restarts.

The loop stops at `max_steps` or `max_seconds`, whichever comes first (DESIGN §11), so a slow
machine trains fewer steps instead of blowing the notebook's budget.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import runtime
from .config import ImageTokenizerConfig
from .image import ImageTokenizer, build_image_tokenizer, check_images
from .metrics import code_counts, perplexity, psnr
from .vq import kmeans_init_, restart_dead_codes_


def reconstruction_loss(recon: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """L2 (what PSNR measures) + L1 (keeps small, sharp details such as eyes and glasses frames,
    which L2 alone blurs away because their squared error is tiny)."""
    return F.mse_loss(recon, images) + F.l1_loss(recon, images)


def _lr_factor(step: int, max_steps: int, warmup: int = 20) -> float:
    """Linear warm-up, then cosine decay to 10% at max_steps."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))


def fit_image_tokenizer(config: ImageTokenizerConfig, images: torch.Tensor,
                        progress: bool | None = None) -> tuple[ImageTokenizer, dict]:
    """(tokenizer, history): built from `config` and trained on images (N, 3, H, W) in [-1, 1].
    The initial weights come from config.seed, so the same (config, images) train the same
    tokenizer (the cache and the recipe benchmark both rely on it)."""
    runtime.seed_everything(config.seed)
    tokenizer = build_image_tokenizer(config)
    return tokenizer, train_image_tokenizer(tokenizer, images, progress=progress)


def train_image_tokenizer(tokenizer: ImageTokenizer, images: torch.Tensor, *,
                          max_steps: int | None = None, max_seconds: float | None = None,
                          batch_size: int | None = None, lr: float | None = None,
                          seed: int | None = None, ae_warmup_steps: int | None = None,
                          log_every: int = 25,
                          progress: bool | None = None) -> dict:
    """Train `tokenizer` in place on images (N, 3, H, W) in [-1, 1]. Unset arguments come from
    tokenizer.config. Returns a history dict of per-log-step lists plus totals."""
    cfg = tokenizer.config
    max_steps = cfg.max_steps if max_steps is None else max_steps
    max_seconds = cfg.max_seconds if max_seconds is None else max_seconds
    batch_size = batch_size or cfg.batch_size
    lr = lr or cfg.lr
    seed = cfg.seed if seed is None else seed
    check_images(images, cfg.image_size)
    n, K = images.shape[0], tokenizer.codebook_size
    device = tokenizer.codebook.device
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # nothing in the model draws random numbers today; future-proof
    start = time.perf_counter()

    tokenizer.train()
    # k-means on encoder outputs of enough images for ~8 vectors per code: every code starts
    # owning a piece of the data instead of most codes being far from everything.
    n_init = min(n, max(batch_size, math.ceil(8 * K / cfg.tokens_per_image)))
    warmup = cfg.ae_warmup_steps if ae_warmup_steps is None else ae_warmup_steps

    opt = torch.optim.AdamW(tokenizer.parameters(), lr=lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, max(max_steps, 1)))
    counts = torch.zeros(K, dtype=torch.long)
    hist = {k: [] for k in ("step", "loss", "recon_mse", "vq_loss", "psnr", "perplexity",
                            "dead_share", "restarted", "lr", "seconds")}
    window = {"loss": 0.0, "mse": 0.0, "vq": 0.0, "n": 0}
    last_dead, restarted_since_log = float("nan"), 0
    bar = tqdm(total=max_steps, desc="tokenizer", leave=False,
               disable=runtime.progress_disabled() if progress is None else not progress)
    step = 0
    while step < max_steps and time.perf_counter() - start < max_seconds:
        if step == warmup:  # codes start where the (warmed-up) encoder puts its outputs
            _init_codebook(tokenizer, images, n_init, g)
        x = images[torch.randint(n, (batch_size,), generator=g)].to(device)  # (B, 3, H, W)
        if step < warmup:  # plain autoencoder: the encoder learns features before codes exist
            z = tokenizer.encode_latents(x)
            recon, vq_loss = tokenizer.decode_latents(z), z.new_zeros(())
            codes = torch.zeros(1, dtype=torch.long)
        else:
            recon, codes, vq_loss = tokenizer(x)
        loss = reconstruction_loss(recon, x) + vq_loss
        mse = F.mse_loss(recon.detach(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        counts += code_counts(codes.cpu(), K)
        window["loss"] += loss.item()
        window["mse"] += mse.item()
        window["vq"] += vq_loss.item()
        window["n"] += 1

        if cfg.restart_every and step > warmup and (step - warmup) % cfg.restart_every == 0:
            last_dead = float((counts == 0).double().mean())
            with torch.no_grad():
                z = tokenizer.encode_latents(x)
            dead = restart_dead_codes_(tokenizer.codebook.data, counts.to(device), z, generator=g)
            _reset_adam_rows(opt, tokenizer.codebook, dead)
            restarted_since_log += int(dead.numel())
            counts.zero_()

        if step % log_every == 0 or step == max_steps:
            m = window["mse"] / window["n"]
            hist["step"].append(step)
            hist["loss"].append(window["loss"] / window["n"])
            hist["recon_mse"].append(m)
            hist["vq_loss"].append(window["vq"] / window["n"])
            hist["psnr"].append(10 * math.log10(4.0 / max(m, 1e-12)))
            hist["perplexity"].append(perplexity(codes.cpu(), K))
            hist["dead_share"].append(last_dead)
            hist["restarted"].append(restarted_since_log)
            hist["lr"].append(sched.get_last_lr()[0])
            hist["seconds"].append(time.perf_counter() - start)
            bar.set_postfix(loss=f"{hist['loss'][-1]:.4f}", psnr=f"{hist['psnr'][-1]:.1f}")
            window = {"loss": 0.0, "mse": 0.0, "vq": 0.0, "n": 0}
            restarted_since_log = 0
        bar.update(1)
    bar.close()
    if step <= warmup:  # stopped (time limit) before quantising: still give a usable codebook
        _init_codebook(tokenizer, images, n_init, g)
    tokenizer.eval()
    runtime.warn_if_time_limited("image tokenizer", step, max_steps, max_seconds)
    seconds = time.perf_counter() - start
    hist.update(steps=step, total_seconds=seconds,
                images_per_second=step * batch_size / max(seconds, 1e-9))
    return hist


@torch.no_grad()
def _init_codebook(tokenizer: ImageTokenizer, images: torch.Tensor, n_init: int,
                   g: torch.Generator) -> None:
    x0 = images[torch.randperm(len(images), generator=g)[:n_init]].to(tokenizer.codebook.device)
    kmeans_init_(tokenizer.codebook.data, tokenizer.encode_latents(x0), generator=g)


def _reset_adam_rows(opt: torch.optim.Optimizer, param: torch.Tensor, rows: torch.Tensor) -> None:
    """Zero Adam's moments for restarted codes: their old momentum pointed somewhere else."""
    state = opt.state.get(param, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state and rows.numel():
            state[key][rows] = 0


@torch.no_grad()
def evaluate_image_tokenizer(tokenizer: ImageTokenizer, images: torch.Tensor,
                             batch_size: int = 256) -> dict:
    """Reconstruction PSNR and codebook health on held-out images (N, 3, H, W) in [-1, 1]."""
    codes = tokenizer.encode(images, batch_size)
    recon = tokenizer.decode(codes, batch_size)
    K = tokenizer.codebook_size
    return {"psnr": psnr(images, recon), "mse": float((images - recon).pow(2).mean()),
            "perplexity": perplexity(codes, K), "dead_code_share": float(
                (code_counts(codes, K) == 0).double().mean()),
            "codes_used": int((code_counts(codes, K) > 0).sum()), "codebook_size": K}
