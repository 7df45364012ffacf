"""The ``instab`` command line: builds the top-level parser and dispatches to one module per command.

Exit codes: 0 success; 1 the command ran but some inputs failed (recorded and
summarized); 2 bad usage or unusable input (a clear message, never a traceback);
130 interrupted with Ctrl-C (what was stored is kept; ``instab score`` says how
much, and resumes when run again).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence

import instab
from instab.cli import (
    capture,
    characterize,
    demo,
    devices,
    envs,
    export,
    mitigate,
    models,
    report,
    score,
    simulate,
    train,
)
from instab.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, UsageError

#: The command modules, in the order ``instab --help`` lists them; each has ``add_parser`` and ``run``.
COMMANDS = (demo, simulate, characterize, score, report, export, mitigate, train, models, envs, devices, capture)


def build_parser() -> argparse.ArgumentParser:
    """The ``instab`` parser with every command; each sub-parser's ``func`` runs its command."""
    parser = argparse.ArgumentParser(
        prog="instab",
        description="Measure and reduce the instability of image classifiers across devices.",
        epilog="Exit codes: 0 ok; 1 finished but some inputs failed (see the summary); 2 bad usage or input; "
               "130 interrupted (Ctrl-C).",
    )
    parser.add_argument("--version", action="version", version=f"instab {instab.__version__}")
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
    except BrokenPipeError:  # e.g. `instab envs list | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_OK
    except KeyboardInterrupt as exc:  # Ctrl-C, in any command: what was stored is kept
        detail = str(exc) or "nothing to resume: run it again to start over"
        print(f"instab {args.command}: interrupted: {detail}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, ValueError, TypeError, OSError, sqlite3.Error, ImportError) as exc:
        # one line, even for a message that spans several (e.g. from a library); ImportError: a missing extra
        message = " ".join(line.strip() for line in str(exc).splitlines())
        print(f"instab {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

__all__ = [
    "COMMANDS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "main",
]
