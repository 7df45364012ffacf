"""``instab export``: a results store -> one Parquet or CSV file, one row per image x environment x repeat."""

from __future__ import annotations

import argparse
from pathlib import Path

from instab.cli.common import EXIT_OK, UsageError, print_json
from instab.io.export import FORMATS, export_store
from instab.io.table import MissingDependencyError

_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``export`` command to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("export", help="results store -> Parquet or CSV file (one row per image x "
                                             "environment x repeat) for pandas and co.")
    p.add_argument("results", help="results store (SQLite file) or dataset (folder) written by 'instab score'")
    p.add_argument("--out", required=True, help="the file to write (.parquet or .csv)")
    p.add_argument("--format", choices=FORMATS,
                   help="file format (default: from the --out suffix: .parquet/.pq or .csv); parquet needs "
                        "pyarrow (instab[export])")
    p.add_argument("--model", help="only this model's rows: its name, hash or a prefix of the hash (default: "
                                   "every model in the store)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``instab export``; returns the exit code."""
    fmt = args.format or _SUFFIXES.get(Path(args.out).suffix.lower())
    if fmt is None:
        raise UsageError(f"--format: cannot tell it from {args.out}; give --format {' or '.join(FORMATS)}")
    try:
        summary = export_store(args.results, args.out, format=fmt, model=args.model, overwrite=args.overwrite)
    except MissingDependencyError as exc:
        raise UsageError(f"--format {fmt}: {exc}") from None
    models = [{"model": name, "model_hash": h} for name, h in summary.models]
    if args.json:
        print_json({"out": str(summary.path), "format": summary.format, "rows": summary.rows, "models": models})
    else:
        names = ", ".join(f"{name} {h[:12]}" if h != name else name for name, h in summary.models)
        print(f"exported {summary.rows} rows ({names}) to {summary.path} ({summary.format})")
    return EXIT_OK


__all__ = ["add_parser", "run"]
