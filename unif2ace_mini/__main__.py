"""Command line: `python -m unif2ace_mini <command>` (also installed as `unif2ace-mini`).

  data build          render a SynthFaces dataset (imagefolder layout)
  train               train the unified model on a profile (checkpoints, --resume)
  generate            generate a face from a caption or attribute JSON
  answer              answer a question about a face image (or caption it)
  profiles            list the profiles and their sizes
  reproduce           execute every notebook on a profile and write runs/<profile>/report.md
  refresh-notebooks   re-execute notebooks in place: the stored outputs nbval compares
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _profiles(args: argparse.Namespace) -> int:
    from .profiles import PROFILES, get_profile

    names = [args.name] if args.name else list(PROFILES)
    for name in names:
        print(json.dumps(get_profile(name).to_dict(), indent=2 if args.name else None))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from .profiles import get_profile
    from .reproduce import execute_course, write_report

    get_profile(args.profile)  # an unknown name fails here, before any notebook starts
    runs = execute_course(Path(args.out), profile=args.profile)
    report = write_report(runs, Path(args.out), args.profile)
    failed = [r.source.name for r in runs if r.error]
    print(f"[reproduce] report: {report}")
    if failed:
        print(f"[reproduce] failed notebooks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from .reproduce import refresh_notebooks

    refresh_notebooks([Path(p) for p in args.notebooks] or None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .data.cli import add_cli as add_data_cli
    from .inference_cli import add_cli as add_inference_cli
    from .training import add_cli as add_train_cli

    parser = argparse.ArgumentParser(prog="unif2ace_mini", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_data_cli(sub)
    add_train_cli(sub)
    add_inference_cli(sub)

    p = sub.add_parser("profiles", help="list the profiles (or show one)")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=_profiles)

    p = sub.add_parser("reproduce", help="execute every notebook and write a report")
    p.add_argument("--profile", default="quick")
    p.add_argument("--out", default=None, help="output folder (default runs/<profile>)")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("refresh-notebooks", help="re-execute notebooks in place (stored outputs)")
    p.add_argument("notebooks", nargs="*", help="notebook paths (default: all of notebooks/)")
    p.set_defaults(func=_refresh)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "out", "") is None and args.command == "reproduce":
        args.out = f"runs/{args.profile}"
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, PermissionError, NotADirectoryError) as err:
        # bad input is reported in one line, not as a traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
