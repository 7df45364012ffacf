"""``instab simulate``: labelled images -> environments or virtual devices -> image files + a manifest."""

from __future__ import annotations

import argparse

from instab.cli.common import EXIT_OK, EXIT_PARTIAL, UsageError, labelled_images
from instab.environments import devices
from instab.workflow.simulate import simulate


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``simulate`` command to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("simulate", help="images -> environments or virtual devices -> image files + manifest")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--labels", required=True, help="labels CSV with columns file, class_index")
    p.add_argument("--env", action="append", help="environment, e.g. jpeg:q=85 (repeatable)")
    p.add_argument("--device", action="append", help="virtual device profile name (repeatable)")
    p.add_argument("--profiles", help="TOML file of extra device profiles ([device.NAME] tables)")
    p.add_argument("--repeats", type=int, default=1, help="shots per environment (default: %(default)s)")
    p.add_argument("--limit", type=int, help="use only the first N images of the labels CSV")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True, help="output folder (images and manifest.csv)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``instab simulate``; returns the exit code (1 when some images or label rows failed)."""
    if args.profiles:
        devices.load_profiles(args.profiles)
    envs = list(args.env or []) + [f"device:{d}" for d in (args.device or [])]
    if not envs:
        raise UsageError("give at least one --env or --device")
    items, label_errors = labelled_images(args.images, args.labels, args.limit)
    summary = simulate(items, envs, args.out, repeats=args.repeats, seed=args.seed, threads=args.threads)
    for e in label_errors[:10]:
        print(f"labels: {e}")
    print(summary.text())
    return EXIT_PARTIAL if summary.errors or label_errors else EXIT_OK


__all__ = ["add_parser", "run"]
