"""``instab simulate``: labelled images -> environments or virtual devices -> image files + a manifest."""

from __future__ import annotations

import argparse

from instab.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    UsageError,
    check_empty_out,
    labelled_images,
    print_json,
    print_problems,
)
from instab.cli.engine import add_engine_arguments, check_engine_arguments
from instab.cli.progress import progress_for
from instab.environments import devices
from instab.workflow.ray_simulate import simulate_ray
from instab.workflow.simulate import simulate


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``simulate`` command to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("simulate", help="images -> environments or virtual devices -> image files + manifest")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--labels", required=True, help="labels CSV with columns file, class_index")
    p.add_argument("--env", action="append", help="environment, e.g. jpeg:q=85 (repeatable; see 'instab envs list')")
    p.add_argument("--device", action="append",
                   help="virtual device profile name (repeatable; see 'instab devices list')")
    p.add_argument("--profiles", help="TOML file of extra device profiles ([device.NAME] tables)")
    p.add_argument("--repeats", type=int, default=1, help="shots per environment (default: %(default)s)")
    p.add_argument("--limit", type=int, help="use only the first N images of the labels CSV")
    p.add_argument("--seed", type=int, default=0, help="seed of the randomized environments (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    p.add_argument("--out", required=True, help="output folder (images and manifest.csv); must be empty or new")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out (files of the same names are replaced)")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_engine_arguments(p, actors=False)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``instab simulate``; returns the exit code (1 when some images or label rows failed)."""
    if args.profiles:
        devices.load_profiles(args.profiles)
    envs = list(args.env or []) + [f"device:{d}" for d in (args.device or [])]
    if not envs:
        raise UsageError("give at least one --env or --device")
    check_empty_out(args.out, args.overwrite)
    check_engine_arguments(args)
    items, label_errors = labelled_images(args.images, args.labels, args.limit)
    try:
        with progress_for(args.quiet) as progress:
            if args.engine == "ray":
                summary = simulate_ray(items, envs, args.out, repeats=args.repeats, seed=args.seed,
                                       address=args.address, progress=progress)
            else:
                summary = simulate(items, envs, args.out, repeats=args.repeats, seed=args.seed,
                                   threads=args.threads, progress=progress)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"the images written so far in {args.out} have no manifest.csv yet: run the same "
                                "command with --overwrite to start over") from None
    print_problems("labels", label_errors)
    print_problems("simulate", summary.errors)
    if args.json:
        print_json({"manifest": str(summary.manifest), "written": summary.written, "failed": len(summary.errors),
                    "rejected_label_rows": len(label_errors)})
    else:
        print(f"wrote {summary.written} images and {summary.manifest}")
    return EXIT_PARTIAL if summary.errors or label_errors else EXIT_OK


__all__ = ["add_parser", "run"]
