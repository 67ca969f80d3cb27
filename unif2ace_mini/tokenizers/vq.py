"""Vector quantisation, shared by both image-tokenizer backends.

The encoder maps an image to a grid of vectors z; each vector is replaced by its nearest codebook
entry e_k, and k is the image token. argmin has no gradient, so training uses two tricks:

- straight-through: the decoder sees z + (e_k - z).detach(), i.e. the value e_k, but the gradient
  flows to z as if quantisation were the identity;
- two squared-error terms: ||sg[z] - e_k||^2 pulls the code towards the encoder output (the
  codebook loss) and beta * ||z - sg[e_k]||^2 keeps the encoder close to its codes (commitment),
  so z cannot drift away from the codebook.

Codebooks collapse easily (a few codes win, the rest never get a gradient), so we initialise codes
with k-means on encoder outputs and restart codes that go unused for a while at random encoder
outputs. The functions take the codebook as a plain tensor so they work on our own module and on
diffusers' VQModel (its `quantize.embedding.weight`) alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code for each row of z (N, D) in codebook (K, D) -> (N,)."""
    # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 is the same for every k, so drop it.
    # One matmul, unlike torch.cdist, which also takes a square root we do not need.
    dist = codebook.pow(2).sum(1) - 2.0 * z @ codebook.t()  # (N, K)
    return dist.argmin(1)


def flatten_grid(z: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) -> (B*h*w, D), rows in raster order."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def lookup(codes: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Codes (B, h, w) -> code vectors (B, D, h, w)."""
    return codebook[codes].permute(0, 3, 1, 2).contiguous()


def quantize(z: torch.Tensor, codebook: torch.Tensor, beta: float = 0.25):
    """Quantise z (B, D, h, w) with codebook (K, D).

    Returns (z_q, codes, loss): z_q (B, D, h, w) carries straight-through gradients to z,
    codes (B, h, w) are the tokens, loss = codebook term + beta * commitment term.
    """
    B, D, h, w = z.shape
    flat = flatten_grid(z)                                   # (N, D)
    codes = nearest_codes(flat.detach(), codebook)           # (N,)
    q = codebook[codes]                                      # (N, D)
    loss = F.mse_loss(q, flat.detach()) + beta * F.mse_loss(flat, q.detach())
    q = flat + (q - flat).detach()                           # straight-through estimator
    z_q = q.view(B, h, w, D).permute(0, 3, 1, 2)             # (B, D, h, w)
    return z_q, codes.view(B, h, w), loss


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None):
    """Plain Lloyd k-means on rows of x (N, D) -> centres (k, D). Empty clusters are re-seeded
    with random points, so every centre ends up owning data."""
    n = x.shape[0]
    idx = torch.randperm(n, generator=generator)[:k] if n >= k else \
        torch.randint(n, (k,), generator=generator)
    centres = x[idx].clone()
    if n < k:  # duplicated starts would stay identical; jitter them apart
        centres += 1e-3 * x.std() * torch.randn(centres.shape, generator=generator).to(x)
    for _ in range(iters):
        assign = nearest_codes(x, centres)                   # (N,)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            centres[empty] = x[torch.randint(n, (int(empty.sum()),), generator=generator)]
    return centres


@torch.no_grad()
def kmeans_init_(codebook: torch.Tensor, z: torch.Tensor, iters: int = 10,
                 generator: torch.Generator | None = None) -> None:
    """Overwrite codebook (K, D) in place with k-means centres of encoder outputs z (B, D, h, w)."""
    codebook.copy_(kmeans(flatten_grid(z).float(), codebook.shape[0], iters, generator))


@torch.no_grad()
def restart_dead_codes_(codebook: torch.Tensor, counts: torch.Tensor, z: torch.Tensor,
                        generator: torch.Generator | None = None,
                        min_count: int = 1) -> torch.Tensor:
    """Move codes used fewer than `min_count` times to random encoder outputs z (B, D, h, w).

    A dead code gets no gradient from the codebook loss, so it would stay dead forever; placing it
    on a real encoder output makes it the nearest code for something again. Returns the indices
    restarted (LongTensor).
    """
    dead = (counts < min_count).nonzero().flatten()
    if dead.numel() == 0:
        return dead
    flat = flatten_grid(z)
    pick = torch.randint(flat.shape[0], (dead.numel(),), generator=generator)
    # Tiny noise, so two restarts on the same vector can still separate.
    noise = 1e-2 * flat.std() * torch.randn((dead.numel(), flat.shape[1]), generator=generator)
    codebook[dead] = flat[pick] + noise.to(flat)
    return dead
