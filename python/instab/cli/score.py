"""``instab score``: a manifest CSV -> the SQLite results store (or, on Ray, a Parquet results dataset), resumable."""

from __future__ import annotations

import argparse

from instab._shared.progress import Progress
from instab.cli.common import EXIT_OK, EXIT_PARTIAL, print_json, print_problems, read_class_names, split_summary
from instab.cli.engine import add_engine_arguments, check_engine_arguments
from instab.cli.progress import progress_for
from instab.workflow.ray_score import score_manifest_ray
from instab.workflow.score import ScoreSummary, score_manifest


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``score`` command to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("score", help="score a manifest CSV into a SQLite results store (resumable)")
    p.add_argument("manifest", help="manifest CSV: image_id, environment, path, labels[, repeat, group]")
    p.add_argument("--model", default="efficientnet-lite0", help="model name or ONNX path (default: %(default)s)")
    p.add_argument("--out", required=True, help="results store (SQLite file; --engine ray: a dataset folder); an "
                                                "existing one is resumed")
    p.add_argument("-k", type=int, default=5, help="classes stored per item (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="images per inference batch (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    p.add_argument("--class-names", help="text file of class names (one per line) for name labels")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_engine_arguments(p, actors=True)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``instab score``; returns the exit code (1 when some rows were rejected or failed)."""
    check_engine_arguments(args)
    with progress_for(args.quiet) as progress:
        summary = _score(args, progress)
    manifest = summary.manifest
    # rejected rows and failed items on stderr, the counts on stdout
    print_problems("manifest", manifest.errors)
    print_problems("score", summary.failed)
    if args.json:
        print_json({
            "results": str(args.out), "model": summary.model, "model_hash": summary.model_hash,
            "valid_rows": len(manifest.rows), "rejected_rows": len(manifest.errors), "scored": summary.scored,
            "already_done": summary.already_done, "rescored": summary.rescored, "relabelled": summary.relabelled,
            "failed": len(summary.failed), "seconds": summary.seconds,
            "images_per_second": summary.images_per_second, "engine": args.engine,
        })
    else:
        head, _details = split_summary(summary.text())  # the details went to stderr above
        print("\n".join(head))
        print(f"results: {args.out}")
    return EXIT_PARTIAL if summary.failed or manifest.errors else EXIT_OK


def _score(args: argparse.Namespace, progress: Progress | None) -> ScoreSummary:
    names = read_class_names(args.class_names)
    if args.engine == "ray":
        return score_manifest_ray(args.manifest, args.model, args.out, k=args.k, batch_size=args.batch_size,
                                  address=args.address, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                                  provider=args.provider, class_names=names, progress=progress)
    return score_manifest(args.manifest, args.model, args.out, k=args.k, batch_size=args.batch_size,
                          threads=args.threads, class_names=names, progress=progress)


__all__ = ["add_parser", "run"]
