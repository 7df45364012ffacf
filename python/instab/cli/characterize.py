"""``instab characterize``: one of the source study's experiments; prints its table(s) and writes .txt/.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from instab.cli.common import EXIT_OK, UsageError
from instab.cli.mitigation import add_mitigation_arguments, run_mitigation_cli
from instab.environments import devices
from instab.studies.characterize import EXPERIMENT_NAMES, run_experiment
from instab.studies.result import StudyResult, to_plain


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``characterize`` command (with the mitigation study's options) to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("characterize", help="run one of the source study's experiments on labelled images")
    p.add_argument("--experiment", required=True, choices=EXPERIMENT_NAMES)
    p.add_argument("--images", help="folder of images")
    p.add_argument("--labels", help="labels CSV with columns file, class_index")
    p.add_argument("--model", action="append",
                   help="model name or ONNX path (repeatable; default efficientnet-lite0; runtime: the int8 "
                        "model, then another build of it)")
    p.add_argument("--profiles", help="TOML file of extra device profiles")
    p.add_argument("--raw", help="isp-psnr: the raw frame folder (meta.json and headerless mosaics)")
    p.add_argument("--limit", type=int, help="use only the first N images of the labels CSV")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", help="folder for the .txt/.json tables")
    add_mitigation_arguments(p)  # --eval-images, --eval-labels, ... (the options above are shared)
    p.set_defaults(func=run)
    return p


def write_result(result: StudyResult, out: str | Path, name: str) -> None:
    """``out/<name>.txt`` (the printed text) and ``out/<name>.json`` (``to_dict()``, NaN as null)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(result.to_text() + "\n")
    (folder / f"{name}.json").write_text(json.dumps(to_plain(result.to_dict()), indent=1))


def run(args: argparse.Namespace) -> int:
    """Run ``instab characterize``; returns the exit code."""
    if args.profiles:
        devices.load_profiles(args.profiles)
    if args.experiment == "mitigation":
        return run_mitigation_cli(args)
    has_images = bool(args.images and args.labels)
    if not has_images and not (args.experiment == "isp-psnr" and args.raw):
        alternative = " (or --raw)" if args.experiment == "isp-psnr" else ""
        raise UsageError(f"--images and --labels are required{alternative}")
    result = run_experiment(args.experiment, args.images if has_images else None, args.labels if has_images else None,
                            args.model, raw=args.raw, limit=args.limit, seed=args.seed, threads=args.threads)
    print(result.to_text())
    if args.out is not None:
        write_result(result, args.out, args.experiment)
    return EXIT_OK


__all__ = ["add_parser", "run", "write_result"]
