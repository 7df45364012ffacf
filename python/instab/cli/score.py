"""``instab score``: a manifest CSV -> the SQLite results store, resumable."""

from __future__ import annotations

import argparse
import sys

from instab.cli.common import EXIT_OK, EXIT_PARTIAL, read_class_names
from instab.workflow.score import score_manifest


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``score`` command to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("score", help="score a manifest CSV into a SQLite results store (resumable)")
    p.add_argument("manifest", help="manifest CSV: image_id, environment, path, labels[, repeat, group]")
    p.add_argument("--model", default="efficientnet-lite0", help="model name or ONNX path (default: %(default)s)")
    p.add_argument("--out", required=True, help="results store (SQLite); an existing one is resumed")
    p.add_argument("-k", type=int, default=5, help="classes stored per item (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument("--class-names", help="text file of class names (one per line) for name labels")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)
    return p


class _ProgressLine:
    """Progress as one line on stderr, rewritten in place; :meth:`end` closes it if anything was shown."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, line: str) -> None:
        sys.stderr.write("\r" + line)
        sys.stderr.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """Run ``instab score``; returns the exit code (1 when some rows were rejected or failed)."""
    progress = None if args.quiet else _ProgressLine()
    try:
        summary = score_manifest(
            args.manifest, args.model, args.out, k=args.k, batch_size=args.batch_size, threads=args.threads,
            class_names=read_class_names(args.class_names), progress=progress,
        )
    finally:
        if progress is not None:
            progress.end()
    print(summary.text())
    print(f"results: {args.out}")
    return EXIT_PARTIAL if summary.failed or summary.manifest.errors else EXIT_OK


__all__ = ["add_parser", "run"]
