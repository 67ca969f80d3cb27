"""`python -m unif2ace_mini train --profile quick [--resume] [--out DIR] [--max-steps N]`.

The package's __main__ owns the parser; it calls `add_cli(subparsers)` and then `args.func(args)`.
"""

from __future__ import annotations

import argparse
import json


def add_cli(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train the unified model (t2i + mmu)",
                              description="Joint D3Diff + next-token training of UniFace. The "
                                          "profile gives the model and training settings.")
    p.add_argument("--profile", default="quick", help="quick | cpu | gpu | paper (default: quick)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.safetensors (same settings required)")
    p.add_argument("--out", help="output folder (default: runs/<profile>/train)")
    p.add_argument("--max-steps", type=int, help="override the profile's step limit")
    p.add_argument("--max-seconds", type=float, help="override the profile's time limit")
    p.set_defaults(func=run_train)
    return p


def run_train(args) -> int:
    from .. import profiles, runtime
    from .config import get_train_config
    from .loop import train

    profile = profiles.get_profile(args.profile)
    runtime.setup(threads=profile.threads, device=profile.device)
    config = get_train_config(profile)
    if args.max_steps is not None:
        if args.max_steps < 0:
            raise ValueError(f"--max-steps must be >= 0, got {args.max_steps}")
        config = config.replace(max_steps=args.max_steps)
    if args.max_seconds is not None:
        config = config.replace(max_seconds=args.max_seconds)
    result = train(profile, out_dir=args.out, resume=args.resume, train_config=config)
    last = result.history[-1] if result.history else {}
    print(json.dumps({"out": str(result.out_dir), "step": result.step,
                      "stop_reason": result.stop_reason, "seconds": round(result.seconds, 1),
                      "t2i": last.get("t2i"), "mmu": last.get("mmu")}, indent=1))
    return 0
