"""``instab models``: list the built-in models, inspect one, or dequantize a QDQ int8 model."""

from __future__ import annotations

import argparse
from collections import Counter

from instab import models
from instab.cli.common import EXIT_OK, UsageError, print_json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``models`` command to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("models", help="list, inspect or dequantize models")
    p.add_argument("action", choices=["list", "inspect", "dequantize"],
                   help="list the built-in models, inspect one, or dequantize a QDQ int8 model to float")
    p.add_argument("name", nargs="?", help="model name or ONNX path")
    p.add_argument("--out", help="output ONNX file (dequantize)")
    p.add_argument("--json", action="store_true", help="list: print the names and search path as one JSON object")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``instab models ACTION``; returns the exit code."""
    if args.action == "list" and args.json:
        print_json({"models": models.builtin_names(), "search_path": [str(p) for p in models.search_path()]})
        return EXIT_OK
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
        if isinstance(model, models.TFLiteModel):  # a flat buffer run by LiteRT: no ONNX operators to list
            return EXIT_OK
        ops = Counter(node.op_type for node in model.proto.graph.node)
        print("operators: " + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())))
        return EXIT_OK
    if not args.out:
        raise UsageError("models dequantize: --out FILE.onnx is required")
    path = models.dequantize(model).save(args.out)
    print(f"wrote {path}")
    return EXIT_OK


__all__ = ["add_parser", "run"]
