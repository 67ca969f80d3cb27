"""SynthFaces speed: render rate per size (one process) and the quick profile's full build time.

    .venv/bin/python benchmarks/bench_data.py [--n 300] [--skip-build]

Numbers depend on the machine and on what else runs on it; data/README.md records ours.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

import numpy as np

from unif2ace_mini import profiles
from unif2ace_mini.data import build, make_identity, render, sample_image_attributes


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300, help="images per render measurement")
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("UNIF2ACE_NO_PROGRESS", "1")
    for size in (32, 64, 128):
        print(f"render {size:3d} px: {render_rate(size, args.n, False):6.0f} img/s, "
              f"with PNG {render_rate(size, args.n, True):6.0f} img/s  (one core)")
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
