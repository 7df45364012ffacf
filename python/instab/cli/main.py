"""The ``instab`` command line: builds the top-level parser and dispatches to one module per command.

Exit codes: 0 success; 1 the command ran but some inputs failed (recorded and
summarized); 2 bad usage or unusable input (a clear message, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from instab.cli import characterize, demo, models, report, score, simulate, train
from instab.cli.common import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, UsageError

#: The command modules, in the order ``instab --help`` lists them; each has ``add_parser`` and ``run``.
COMMANDS = (demo, simulate, characterize, score, report, train, models)


def build_parser() -> argparse.ArgumentParser:
    """The ``instab`` parser with every command; each sub-parser's ``func`` runs its command."""
    parser = argparse.ArgumentParser(
        prog="instab",
        description="Measure and reduce the instability of image classifiers across devices.",
        epilog="Exit codes: 0 ok; 1 finished but some inputs failed (see the summary); 2 bad usage or input.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, ValueError, TypeError, OSError) as exc:
        print(f"instab {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

__all__ = [
    "COMMANDS",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "main",
]
