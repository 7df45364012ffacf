"""``instab characterize``: one of the source study's experiments; prints its table(s) and writes .txt/.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from instab import models
from instab._shared import provenance
from instab.cli.common import EXIT_OK, EXIT_PARTIAL, UsageError, check_out_folder, print_json, print_problems
from instab.cli.mitigation import add_mitigation_arguments, run_mitigation_cli
from instab.cli.progress import progress_for
from instab.environments import devices
from instab.io.store import model_hash
from instab.studies.characterize import EXPERIMENT_NAMES, experiment_models, input_errors, run_experiment
from instab.studies.result import StudyResult, to_plain


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``characterize`` command (with the mitigation study's options) to the ``instab`` sub-parsers."""
    p = subparsers.add_parser(
        "characterize", help="run one of the source study's experiments on labelled images",
        description="Run one of the source study's experiments; the options of each experiment are grouped below.")
    p.add_argument("--experiment", required=True, choices=EXPERIMENT_NAMES, help="the experiment to run")
    common = p.add_argument_group("every experiment")
    common.add_argument("--images", help="folder of images (mitigation: the training images)")
    common.add_argument("--labels", help="labels CSV with columns file, class_index")
    common.add_argument("--model", action="append",
                        help="model name or ONNX path (repeatable; default efficientnet-lite0; isp, decode: the first; "
                             "runtime: ONNX or .tflite models, each under its runtime configurations; "
                             "mitigation: the one start model)")
    common.add_argument("--limit", type=int, help="use only the first N images of the labels CSV")
    common.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: %(default)s)")
    common.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    common.add_argument("--out", help="folder for the .txt/.json tables (mitigation: required)")
    common.add_argument("--quiet", action="store_true", help="no progress")
    common.add_argument("--json", action="store_true", help="print the result as one JSON object instead of tables")
    devs = p.add_argument_group("devices, top-k and mitigation")
    devs.add_argument("--profiles", help="TOML file of extra device profiles ([device.NAME] tables)")
    psnr = p.add_argument_group("isp-psnr")
    psnr.add_argument("--raw", help="the raw frame folder (meta.json and headerless mosaics)")
    add_mitigation_arguments(p)  # its own group: --eval-images, --eval-labels, ... (the options above are shared)
    p.set_defaults(func=run)
    return p


def write_result(result: StudyResult, out: str | Path, name: str,
                 provenance_record: dict[str, Any] | None = None) -> None:
    """``out/<name>.txt`` (the printed text) and ``out/<name>.json`` (``to_dict()``, NaN as null).

    ``provenance_record`` (:func:`instab._shared.provenance.record`) goes into the JSON as ``provenance``.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    data = to_plain(result.to_dict())
    if provenance_record is not None:
        data["provenance"] = provenance_record
    (folder / f"{name}.txt").write_text(result.to_text() + "\n")
    (folder / f"{name}.json").write_text(json.dumps(data, indent=1))


def _model_hash(name: str) -> str | None:
    """The content hash of a model the experiment used, for its provenance (None if it cannot be loaded again)."""
    try:
        return model_hash(models.load(name))
    except (OSError, ValueError):  # e.g. the file was removed meanwhile: the results are still worth writing
        return None


def run(args: argparse.Namespace) -> int:
    """Run ``instab characterize``; returns the exit code (1 when label rows or images were left out or failed)."""
    started = provenance.utc_now()
    if args.out is not None:
        check_out_folder(args.out)  # before the experiment: a bad --out must not cost its run
    if args.profiles:
        devices.load_profiles(args.profiles)
    if args.experiment == "mitigation":
        return run_mitigation_cli(args)
    has_images = bool(args.images and args.labels)
    if not has_images and not (args.experiment == "isp-psnr" and args.raw):
        alternative = " (or --raw)" if args.experiment == "isp-psnr" else ""
        raise UsageError(f"--images and --labels are required{alternative}")
    with progress_for(args.quiet) as progress:
        result = run_experiment(args.experiment, args.images if has_images else None,
                                args.labels if has_images else None, args.model, raw=args.raw, limit=args.limit,
                                seed=args.seed, threads=args.threads, progress=progress)
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.to_text())
    problems = input_errors(result)
    print_problems(args.experiment, problems)
    if args.out is not None:
        hashes = {m: _model_hash(m) for m in experiment_models(args.experiment, args.model)}
        write_result(result, args.out, args.experiment,
                     provenance.record(started, models=hashes, seeds={"seed": args.seed}))
    return EXIT_PARTIAL if problems else EXIT_OK


__all__ = ["add_parser", "run", "write_result"]
