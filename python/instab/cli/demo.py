"""``instab demo``: the main job on the embedded default photos, with a report."""

from __future__ import annotations

import argparse

from instab.studies.demo import run_demo


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``demo`` command to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("demo", help="run the main job on the embedded default and write a report")
    p.add_argument("--out", default="instab-demo", help="output folder (default: %(default)s)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``instab demo``; returns the exit code."""
    return run_demo(args.out)


__all__ = ["add_parser", "run"]
