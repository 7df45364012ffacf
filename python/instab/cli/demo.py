"""``instab demo``: the main job on the embedded default photos, with a report."""

from __future__ import annotations

import argparse

from instab.cli.common import print_json
from instab.cli.progress import progress_for
from instab.studies.demo import demo_summary, run_demo


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``demo`` command to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("demo", help="run the main job on the embedded default and write a report")
    p.add_argument("--out", default="instab-demo", help="output folder (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object (no tables)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``instab demo``; returns the exit code."""
    with progress_for(args.quiet) as progress:
        code = run_demo(args.out, progress=progress, echo=None if args.json else print)
    if args.json:
        print_json(demo_summary(args.out))
    return code


__all__ = ["add_parser", "run"]
