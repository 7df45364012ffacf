"""``instab mitigate``: fine-tune a model for stability across devices; write it, its int8 copy and a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from instab.cli.common import EXIT_OK, EXIT_PARTIAL, UsageError, float_list, print_json, print_problems
from instab.studies.mitigate import MitigateOptions, run_mitigate
from instab.studies.mitigate.options import NOISE_KINDS
from instab.studies.mitigation.config import STABILITY_LOSSES

_DEFAULTS = MitigateOptions()


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``mitigate`` command to the ``instab`` sub-parsers."""
    d = _DEFAULTS
    p = subparsers.add_parser(
        "mitigate", help="fine-tune a model so that its answers change less across devices",
        description="Split the labelled images per class into training, validation and evaluation parts; "
        "fine-tune the model plainly and with a stability loss between two devices' views (same data and "
        "schedule); write OUT/model.onnx, OUT/model_int8.onnx, OUT/mitigation.json and OUT/report.html.")
    p.add_argument("--model", required=True, help="ONNX classifier (name or path; int8 QDQ models are dequantized)")
    p.add_argument("--images", required=True, help="folder of labelled images")
    p.add_argument("--labels", required=True, help="labels CSV (file, class_index)")
    p.add_argument("--out", required=True, help="new folder for the results (must not exist)")
    p.add_argument("--device", default=d.device, help="x's environment (default: %(default)s)")
    p.add_argument("--pair-device", default=d.pair_device, help="x''s environment (default: %(default)s)")
    p.add_argument("--pair-images", help="folder of real photos by a second phone, same file names as --images "
                   "(instead of --device/--pair-device)")
    p.add_argument("--loss", choices=STABILITY_LOSSES, default=d.loss, help="stability loss (default: %(default)s)")
    p.add_argument("--noise", default=d.noise,
                   help=f"how x' is made: {', '.join(NOISE_KINDS)}; e.g. subsample:n=10, gaussian:sigma=0.05 "
                        "(none: the plain fine-tune only) (default: %(default)s)")
    p.add_argument("--alpha", type=float, help="stability weight (default: chosen on the validation images from "
                   "--alphas)")
    p.add_argument("--alphas", type=float_list, help="alpha grid for the choice (default: "
                   + "; ".join(f"{k} {','.join(f'{v:g}' for v in vs)}" for k, vs in d.alphas.items()) + ")")
    p.add_argument("--retain-images", help="folder of images of other classes (measures forgetting)")
    p.add_argument("--retain-labels", help="labels CSV of --retain-images")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training images "
                   "(default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="pairs per step (default: %(default)s)")
    p.add_argument("--trainable", default=d.trainable, help="all (whole network) or last:N (default: %(default)s)")
    p.add_argument("--distill", type=float, default=d.distill,
                   help="weight of the start model's own probabilities in the targets, which keeps the classes "
                        "not trained on (0 = labels only) (default: %(default)s)")
    p.add_argument("--max-retention-drop", type=float, default=d.max_retention_drop,
                   help="alpha is chosen among models whose top-1 on half of the retention images stays within this "
                        "fraction of the input model's (default: %(default)s)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="(default: %(default)s)")
    p.add_argument("--eval-fraction", type=float, default=d.eval_fraction, help="(default: %(default)s)")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 copies")
    p.add_argument("--limit", type=int, help="use only the first N rows of the labels CSV")
    p.add_argument("--seed", type=int, default=d.seed, help="(default: %(default)s)")
    p.add_argument("--threads", type=int, help="worker threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)
    return p


def _options(args: argparse.Namespace) -> MitigateOptions:
    alphas = dict(_DEFAULTS.alphas)
    if args.alphas:
        alphas[args.loss] = args.alphas
    return MitigateOptions(
        device=args.device, pair_device=args.pair_device, loss=args.loss, noise=args.noise, alpha=args.alpha,
        alphas=alphas, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, trainable=args.trainable,
        distill=args.distill, max_retention_drop=args.max_retention_drop, val_fraction=args.val_fraction,
        eval_fraction=args.eval_fraction, int8=args.int8, seed=args.seed, threads=args.threads)


def run(args: argparse.Namespace) -> int:
    """Run ``instab mitigate``; returns the exit code (1 when some images could not be used)."""
    out = Path(args.out)
    # Checked before any work: the run takes minutes, and the folder must be new (nothing half-written shown).
    if out.exists():
        raise UsageError(f"--out: {out} already exists; choose a new folder")
    if not out.parent.is_dir():
        raise UsageError(f"--out: folder {out.parent} does not exist")
    options = _options(args)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    result = run_mitigate(args.model, args.images, args.labels, options, pair_images=args.pair_images,
                          retain_images=args.retain_images, retain_labels=args.retain_labels, limit=args.limit,
                          log=log)
    written = result.write(out)
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.to_text())
        print(f"wrote {', '.join(str(p) for p in written.values())}")
    errors = result.meta["errors"]
    if errors:
        print_problems("instab mitigate: images", errors)
        return EXIT_PARTIAL
    return EXIT_OK


__all__ = ["add_parser", "run"]
