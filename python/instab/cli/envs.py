"""``instab envs list``: every environment kind with its parameters, defaults and one example."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from instab.cli.common import EXIT_OK, print_json
from instab.environments.descriptions import KindInfo, describe
from instab.environments.registry import known_kinds


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``envs`` command to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("envs", help="list the environment kinds (--env TEXT) with parameters and examples")
    p.add_argument("action", choices=["list"], help="list: every kind, its parameters, defaults and one example")
    p.add_argument("--json", action="store_true", help="print them as one JSON object")
    p.set_defaults(func=run)
    return p


def _default(text: str) -> str:
    return text if text.startswith("required") else f"default: {text}"


def kind_text(info: KindInfo) -> str:
    """One kind as the plain listing shows it: a headline, one line per parameter, the example."""
    width = max((len(p.name) for p in info.params), default=0)
    lines = [f"{info.kind}: {info.summary}"]
    lines += [f"  {p.name:<{width}}  {p.meaning} ({_default(p.default)})" for p in info.params]
    lines.append(f"  e.g. --env {info.example}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``instab envs list``; returns the exit code."""
    infos = [describe(kind) for kind in known_kinds()]
    if args.json:
        print_json({"kinds": [asdict(info) for info in infos]})
        return EXIT_OK
    print("\n\n".join(kind_text(info) for info in infos))
    print("\nJoin environments with '+' to chain them, e.g. --env 'distort:phone+jpeg:q=50'.")
    return EXIT_OK


__all__ = ["add_parser", "kind_text", "run"]
