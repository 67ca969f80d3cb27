"""Image-tokenizer quality: reconstruction PSNR and codebook health (perplexity, dead codes)."""

from __future__ import annotations

import math

import torch


def psnr(original: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [-1, 1], averaged over the batch's pixels.

    The peak-to-peak range is 2, so PSNR = 10 log10(2^2 / MSE) -- the same number as for the
    images mapped to [0, 1] with peak 1.
    """
    if original.shape != reconstruction.shape:
        raise ValueError(f"shape mismatch: {tuple(original.shape)} vs "
                         f"{tuple(reconstruction.shape)}")
    mse = (original.float() - reconstruction.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10.0 * math.log10(4.0 / mse)


def code_counts(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """How often each of the K codes occurs in `codes` (any shape) -> (K,) int64."""
    codes = codes.flatten().long()
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size}), got "
                         f"[{int(codes.min())}, {int(codes.max())}]")
    return torch.bincount(codes, minlength=codebook_size)


def perplexity(codes: torch.Tensor, codebook_size: int) -> float:
    """exp(entropy) of the code-usage distribution: K when all K codes are used equally, 1 when a
    single code is used. Reads as "the number of codes effectively in use"."""
    counts = code_counts(codes, codebook_size).double()
    if counts.sum() == 0:
        raise ValueError("perplexity of an empty set of codes is undefined")
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float(entropy.exp())


def dead_code_share(codes: torch.Tensor, codebook_size: int) -> float:
    """Fraction of the K codes that never occur in `codes`."""
    return float((code_counts(codes, codebook_size) == 0).double().mean())


@torch.no_grad()
def attribute_retention(oracle, tokenizer, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Does a reconstruction keep the attributes? The oracle's mean accuracy on the tokenizer's
    reconstructions divided by its accuracy on the originals (1.0: nothing lost).

    Returns {"retention": float, "originals": {group: acc, "mean": acc}, "reconstructions": ...}.
    """
    from ..data.oracle import evaluate_oracle

    originals = evaluate_oracle(oracle, images, labels)
    reconstructions = evaluate_oracle(oracle, tokenizer.reconstruct(images), labels)
    return {"retention": reconstructions["mean"] / originals["mean"],
            "originals": originals, "reconstructions": reconstructions}
