"""SynthFaces speed: render rate per size (one process), the quick profile's full build time and
the oracle's training step time at 32 and 64 px.

    .venv/bin/python benchmarks/bench_data.py [--n 300] [--skip-build] [--threads 2]

Numbers depend on the machine and on what else runs on it; data/README.md records ours.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from unif2ace_mini import profiles
from unif2ace_mini.data import (TAXONOMY, AttributeOracle, build, make_identity, render,
                                sample_image_attributes)


def render_rate(size: int, n: int, encode_png: bool) -> float:
    """Images per second on one core: attribute sampling + drawing (+ PNG encoding)."""
    start = time.perf_counter()
    for i in range(n):
        rng = np.random.default_rng([0, i])
        identity = make_identity(0, i % 100)
        image = render(sample_image_attributes(rng, identity), identity, size, 4, rng)
        if encode_png:
            image.save(io.BytesIO(), format="PNG")
    return n / (time.perf_counter() - start)


def oracle_step_seconds(size: int, width: int = 32, batch_size: int = 128, n: int = 6) -> float:
    """Median seconds of one oracle training step (forward, backward, AdamW), laid out as in
    oracle.train_oracle (channels-last)."""
    model = AttributeOracle(TAXONOMY.num_classes(), size, width).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.zeros(batch_size, len(TAXONOMY), dtype=torch.long)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        loss = sum(F.cross_entropy(lg, y[:, g]) for g, lg in enumerate(model(x)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return sorted(times)[n // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300, help="images per render measurement")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the oracle step")
    args = parser.parse_args()
    os.environ.setdefault("UNIF2ACE_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    for size in (32, 64, 128):
        print(f"render {size:3d} px: {render_rate(size, args.n, False):6.0f} img/s, "
              f"with PNG {render_rate(size, args.n, True):6.0f} img/s  (one core)")
    for size in (32, 64):
        print(f"oracle step {size:3d} px (batch 128, width 32, {args.threads} threads): "
              f"{oracle_step_seconds(size):.3f} s")
    if not args.skip_build:
        cfg = profiles.get_profile("quick").data
        total = cfg.n_train + cfg.n_val + cfg.n_test + cfg.n_compositional
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            build(cfg, tmp)
            seconds = time.perf_counter() - start
        print(f"build quick ({total} images, {cfg.image_size} px, {os.cpu_count()} cores): "
              f"{seconds:.1f} s")


if __name__ == "__main__":
    main()
