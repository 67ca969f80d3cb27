"""`python -m unif2ace_mini data build ...`: the dataset from the command line.

The package's __main__ owns the parser; it calls `add_cli(subparsers)` and then `args.func(args)`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time


def add_cli(subparsers) -> argparse.ArgumentParser:
    data = subparsers.add_parser("data", help="build or inspect the SynthFaces dataset")
    sub = data.add_subparsers(dest="data_command", required=True)
    b = sub.add_parser("build", help="render SynthFaces into an imagefolder directory",
                       description="A profile gives the defaults; explicit flags override them.")
    b.add_argument("--profile", default="quick", help="quick | cpu | gpu | paper (default: quick)")
    b.add_argument("--n", type=int, help="number of train images (val/test/compositional keep "
                                         "the profile's sizes unless --n is smaller)")
    b.add_argument("--seed", type=int, help="dataset seed")
    b.add_argument("--size", type=int, help="image size in pixels: 32, 64, 128 or 256")
    b.add_argument("--out", help="output folder (default: the artifact cache)")
    b.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    b.set_defaults(func=run_build)
    return data


def config_from_args(args) -> "profiles.DataConfig":
    from .. import profiles
    cfg = profiles.get_profile(args.profile).data
    changes = {}
    if args.n is not None:
        if args.n < 1:
            raise ValueError(f"--n must be >= 1, got {args.n}")
        changes.update(n_train=args.n, n_val=min(cfg.n_val, args.n), n_test=min(cfg.n_test, args.n),
                       n_compositional=min(cfg.n_compositional, args.n))
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.size is not None:
        from .renderer import check_size
        changes["image_size"] = check_size(args.size)
    return dataclasses.replace(cfg, **changes)


def run_build(args) -> int:
    from .build import build, build_or_load, split_sizes
    cfg = config_from_args(args)
    start = time.perf_counter()
    path = build(cfg, args.out, args.workers) if args.out else build_or_load(cfg, workers=args.workers)
    print(json.dumps({"path": str(path), "splits": split_sizes(cfg), "image_size": cfg.image_size,
                      "seed": cfg.seed, "seconds": round(time.perf_counter() - start, 1)}, indent=1))
    return 0
