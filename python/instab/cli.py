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
    from instab.demo import run_demo

    return run_demo(args.out)


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"instab {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"instab {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
