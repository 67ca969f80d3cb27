"""Coloured shapes: a tiny, deterministic image set for tests and benchmarks of the tokenizers.

Faces come from unif2ace_mini.data; these need nothing but torch and render in milliseconds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def coloured_shapes(n: int, size: int = 32, seed: int = 0, max_shapes: int = 3) -> torch.Tensor:
    """n images (n, 3, size, size) in [-1, 1]: a flat background and 1..max_shapes circles or
    squares of random colour, rendered at 4x and box-filtered (anti-aliased edges)."""
    g = torch.Generator().manual_seed(seed)
    s = 4 * size
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s               # pixel centres
    yy, xx = coords[:, None], coords[None, :]                               # (s, 1), (1, s)
    img = torch.rand(n, 3, 1, 1, generator=g).mul(0.6).add(0.2).expand(n, 3, s, s).clone()
    n_shapes = torch.randint(1, max_shapes + 1, (n,), generator=g)
    for k in range(max_shapes):
        centre = torch.rand(n, 2, 1, 1, generator=g) * 0.7 + 0.15           # (n, 2, 1, 1)
        radius = torch.rand(n, 1, 1, generator=g) * 0.15 + 0.1              # (n, 1, 1)
        square = torch.rand(n, 1, 1, generator=g) < 0.5
        colour = torch.rand(n, 3, 1, 1, generator=g)
        dx, dy = (xx - centre[:, 0]).abs(), (yy - centre[:, 1]).abs()       # (n, s, s)
        inside = torch.where(square, torch.maximum(dx, dy), (dx ** 2 + dy ** 2).sqrt()) < radius
        inside &= (k < n_shapes)[:, None, None]
        img = torch.where(inside[:, None], colour, img)
    return F.avg_pool2d(img, 4).mul(2).sub(1).clamp(-1, 1)                  # (n, 3, size, size)
