"""``instab report``: a results store or dataset -> an HTML report with figures, JSON and CSV tables."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from instab._shared import provenance
from instab.cli.common import EXIT_OK, UsageError, check_out_folder, read_class_names
from instab.io.dataset import open_results
from instab.io.streaming import streamed_instability
from instab.studies.result import to_plain
from instab.workflow.report import class_names_from_labels, write_report
from instab.workflow.report_gallery import GALLERY_LIMIT


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``report`` command to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("report", help="results store -> HTML report with figures, JSON and CSV tables")
    p.add_argument("results", help="results store (SQLite file) or dataset (folder) written by 'instab score'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", help="which model's results: its name, hash or a prefix of the hash (needed when "
                                   "the store holds several)")
    p.add_argument("--labels", metavar="CSV", help="labels CSV with class_index and a name (or class_name) column: "
                                                   "class names for the gallery and the tables")
    p.add_argument("--class-names", help="text file of class names (one per line, line N names class N-1)")
    p.add_argument("--gallery-limit", type=int, default=GALLERY_LIMIT, metavar="N",
                   help=f"show at most N unstable images in the gallery (default {GALLERY_LIMIT}; all are in "
                        "per_image.csv)")
    p.add_argument("--streaming", action="store_true",
                   help="only the instability counts (top-1, top-3), read in bounded memory whatever the size of "
                        "the results: writes summary.json, no page or figures")
    p.set_defaults(func=run)
    return p


def _rate(name: str, v: dict) -> str:
    rate = "n/a" if v["rate"] is None else f"{v['rate']:.2%}"
    return f"{name}: instability {rate} ({v['n_unstable']}/{v['n_images']})"


def run(args: argparse.Namespace) -> int:
    """Run ``instab report``; returns the exit code."""
    started = provenance.utc_now()
    if not Path(args.results).exists():
        raise UsageError(f"results: {args.results} does not exist")
    if args.gallery_limit < 0:
        raise UsageError(f"--gallery-limit: expected 0 or more images, got {args.gallery_limit}")
    if args.labels is not None and args.class_names is not None:
        raise UsageError("--labels, --class-names: give one source of class names, not both")
    names = read_class_names(args.class_names)
    if args.labels is not None:
        try:
            names = class_names_from_labels(args.labels, what="--labels")
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    if args.streaming:
        return _streamed(args, started)
    with open_results(args.results) as store:  # read-only: a read-only store, dataset or folder is fine
        scored = store.load(args.model)
        runs = _runs(store.meta(), scored.model_hash)
    record = provenance.record(started, models={scored.model: scored.model_hash},
                               results=str(Path(args.results).resolve()), scoring_runs=runs)
    report = write_report(scored, args.out, title=f"instab report: {Path(args.results).name}",
                          class_names=names, provenance=record,
                          gallery_limit=args.gallery_limit)
    print("  ".join(_rate(k, v) for k, v in report.summary["instability"].items()))
    print(f"report: {report.html}")
    return EXIT_OK


def _runs(meta: dict, identity: str) -> list[dict]:
    """The provenance records of the scoring runs of model ``identity`` (the ``runs`` list of the meta data)."""
    stored = meta.get("runs", [])  # a JSON list of provenance records
    return [r for r in (stored if isinstance(stored, list) else []) if identity in r.get("models", {}).values()]


def _streamed(args: argparse.Namespace, started: str) -> int:
    """``--streaming``: the instability counts in bounded memory, into summary.json."""
    out = check_out_folder(args.out)
    streamed = streamed_instability(args.results, args.model, k=(1, 3), first_shots=True)  # the page's headline
    with open_results(args.results) as store:
        runs = _runs(store.meta(), streamed.model_hash)
    summary = {**streamed.to_dict(), "provenance": provenance.record(
        started, models={streamed.model: streamed.model_hash}, results=str(Path(args.results).resolve()),
        scoring_runs=runs)}
    (out / "summary.json").write_text(json.dumps(to_plain(summary), indent=1))
    print("  ".join(_rate(k, v) for k, v in summary["instability"].items()))
    print(f"summary: {out / 'summary.json'}")
    return EXIT_OK


__all__ = ["add_parser", "run"]
