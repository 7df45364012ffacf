"""The ``instab`` command line.

Exit codes: 0 success; 1 the command ran but some inputs failed (recorded and
summarized); 2 bad usage or unusable input (a clear message, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with the user's arguments or input files (exit code 2)."""


def _cmd_demo(args: argparse.Namespace) -> int:
    from instab.studies.demo import run_demo

    return run_demo(args.out)


def _read_names(path: str | None) -> list[str] | None:
    if path is None:
        return None
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--class-names: {path} does not exist")
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _cmd_score(args: argparse.Namespace) -> int:
    from instab.workflow.score import score_manifest

    summary = score_manifest(
        args.manifest, args.model, args.out, k=args.k, batch_size=args.batch_size, threads=args.threads,
        class_names=_read_names(args.class_names), progress=None if args.quiet else sys.stderr,
    )
    print(summary.text())
    print(f"results: {args.out}")
    return EXIT_PARTIAL if summary.failed or summary.manifest.errors else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from instab.workflow.report import write_report
    from instab.io.store import ResultStore

    if not Path(args.results).is_file():
        raise UsageError(f"results: {args.results} does not exist")
    with ResultStore(args.results) as store:
        scored = store.load(args.model)
    report = write_report(scored, args.out, title=f"instab report: {Path(args.results).name}",
                          class_names=_read_names(args.class_names))
    rates = report.summary["instability"]
    print("  ".join(
        f"{k}: instability " + ("n/a" if v["rate"] is None else f"{v['rate']:.2%}") + f" ({v['n_unstable']}/{v['n_images']})"
        for k, v in rates.items()
    ))
    print(f"report: {report.html}")
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    from instab import models

    if args.action == "list":
        for name in models.builtin_names():
            print(name)
        print(f"search path: {', '.join(str(p) for p in models.search_path()) or '(none)'}")
        return EXIT_OK
    if not args.name:
        raise UsageError(f"models {args.action}: give a model name or path")
    model = models.load(args.name)
    if args.action == "inspect":
        print(model)
        print(model.spec)
        graph = model.proto.graph
        ops: dict[str, int] = {}
        for node in graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        print("operators: " + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())))
        return EXIT_OK
    if not args.out:
        raise UsageError("models dequantize: --out FILE.onnx is required")
    path = models.dequantize(model).save(args.out)
    print(f"wrote {path}")
    return EXIT_OK


def _labelled_images(images: str, labels: str, limit: int | None) -> tuple[list, list[str]]:
    from instab.io.manifest import read_labels_csv

    items, errors = read_labels_csv(labels, images, limit)
    if not items:
        raise UsageError(f"no usable images: {labels} lists none that exist in {images}")
    return items, errors


def _cmd_simulate(args: argparse.Namespace) -> int:
    from instab.environments import devices
    from instab.workflow.simulate import simulate

    if args.profiles:
        devices.load_profiles(args.profiles)
    envs = list(args.env or []) + [f"device:{d}" for d in (args.device or [])]
    if not envs:
        raise UsageError("give at least one --env or --device")
    items, label_errors = _labelled_images(args.images, args.labels, args.limit)
    summary = simulate(items, envs, args.out, repeats=args.repeats, seed=args.seed, threads=args.threads)
    for e in label_errors[:10]:
        print(f"labels: {e}")
    print(summary.text())
    return EXIT_PARTIAL if summary.errors or label_errors else EXIT_OK


def _cmd_characterize(args: argparse.Namespace) -> int:
    from instab.studies import characterize
    from instab.environments import devices

    if args.profiles:
        devices.load_profiles(args.profiles)
    if args.experiment == "mitigation":
        from instab.studies.mitigation import run_mitigation_cli

        return run_mitigation_cli(args)
    if not args.images or not args.labels:
        raise UsageError("--images and --labels are required")
    characterize.run(args.experiment, args.images, args.labels, args.model or [characterize.DEFAULT_MODEL],
                     args.out, limit=args.limit, seed=args.seed, threads=args.threads)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instab",
        description="Measure and reduce the instability of image classifiers across devices.",
        epilog="Exit codes: 0 ok; 1 finished but some inputs failed (see the summary); 2 bad usage or input.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser("demo", help="run the main job on the embedded default and write a report")
    demo.add_argument("--out", default="instab-demo", help="output folder (default: %(default)s)")
    demo.set_defaults(func=_cmd_demo)

    sim = sub.add_parser("simulate", help="images -> environments or virtual devices -> image files + manifest")
    sim.add_argument("--images", required=True, help="folder of images")
    sim.add_argument("--labels", required=True, help="labels CSV with columns file, class_index")
    sim.add_argument("--env", action="append", help="environment, e.g. jpeg:q=85 (repeatable)")
    sim.add_argument("--device", action="append", help="virtual device profile name (repeatable)")
    sim.add_argument("--profiles", help="TOML file of extra device profiles ([device.NAME] tables)")
    sim.add_argument("--repeats", type=int, default=1, help="shots per environment (default: %(default)s)")
    sim.add_argument("--limit", type=int, help="use only the first N images of the labels CSV")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--threads", type=int, default=None)
    sim.add_argument("--out", required=True, help="output folder (images and manifest.csv)")
    sim.set_defaults(func=_cmd_simulate)

    from instab.studies.characterize import EXPERIMENT_NAMES

    ch = sub.add_parser("characterize", help="run one of the source study's experiments on labelled images")
    ch.add_argument("--experiment", required=True, choices=EXPERIMENT_NAMES)
    ch.add_argument("--images", help="folder of images")
    ch.add_argument("--labels", help="labels CSV with columns file, class_index")
    ch.add_argument("--model", action="append", help="model name or ONNX path (repeatable; default efficientnet-lite0)")
    ch.add_argument("--profiles", help="TOML file of extra device profiles")
    ch.add_argument("--limit", type=int, help="use only the first N images of the labels CSV")
    ch.add_argument("--seed", type=int, default=0)
    ch.add_argument("--threads", type=int, default=None)
    ch.add_argument("--out", help="folder for the .txt/.json tables")
    from instab.studies.mitigation import add_mitigation_arguments

    add_mitigation_arguments(ch)  # --eval-images, --eval-labels, ... (the options above are shared)
    ch.set_defaults(func=_cmd_characterize)

    score = sub.add_parser("score", help="score a manifest CSV into a SQLite results store (resumable)")
    score.add_argument("manifest", help="manifest CSV: image_id, environment, path, labels[, repeat, group]")
    score.add_argument("--model", default="efficientnet-lite0", help="model name or ONNX path (default: %(default)s)")
    score.add_argument("--out", required=True, help="results store (SQLite); an existing one is resumed")
    score.add_argument("-k", type=int, default=5, help="classes stored per item (default: %(default)s)")
    score.add_argument("--batch-size", type=int, default=32)
    score.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    score.add_argument("--class-names", help="text file of class names (one per line) for name labels")
    score.add_argument("--quiet", action="store_true", help="no progress line")
    score.set_defaults(func=_cmd_score)

    report = sub.add_parser("report", help="results store -> HTML report with figures, JSON and CSV tables")
    report.add_argument("results", help="results store written by 'instab score'")
    report.add_argument("--out", required=True, help="output folder")
    report.add_argument("--model", help="which model's results (needed when the store holds several)")
    report.add_argument("--class-names", help="text file of class names (one per line) for the tables")
    report.set_defaults(func=_cmd_report)

    from instab.cli.train import add_train_parser

    add_train_parser(sub)

    mdl = sub.add_parser("models", help="list, inspect or dequantize models")
    mdl.add_argument("action", choices=["list", "inspect", "dequantize"])
    mdl.add_argument("name", nargs="?", help="model name or ONNX path")
    mdl.add_argument("--out", help="output ONNX file (dequantize)")
    mdl.set_defaults(func=_cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"instab {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError, OSError) as exc:
        print(f"instab {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

__all__ = [
    "UsageError",
    "build_parser",
    "main",
]
