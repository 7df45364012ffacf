"""``instab devices list``: the virtual devices (``--device NAME``, ``device:NAME``) and their main parameters."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from instab.cli.common import EXIT_OK, print_json
from instab.environments import devices

#: The columns of the plain listing: profile field and heading.
COLUMNS = (("name", "name"), ("demosaic", "demosaic"), ("codec", "codec"), ("shot_noise", "shot noise"),
           ("read_noise", "read noise"), ("wb_error", "wb error"), ("tone", "tone"), ("gamma", "gamma"),
           ("saturation", "saturation"), ("sharpen", "sharpen"))


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``devices`` command to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("devices", help="list the virtual devices and their main parameters")
    p.add_argument("action", choices=["list"], help="list: every device profile")
    p.add_argument("--profiles", help="TOML file of extra device profiles to list too ([device.NAME] tables)")
    p.add_argument("--json", action="store_true", help="print them as one JSON object")
    p.set_defaults(func=run)
    return p


def _cell(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(format(v, "g") for v in value)
    return format(value, "g") if isinstance(value, float) else str(value)


def run(args: argparse.Namespace) -> int:
    """Run ``instab devices list``; returns the exit code."""
    if args.profiles:
        devices.load_profiles(args.profiles)
    profiles = [devices.get(name) for name in devices.names()]
    builtin = set(devices.builtin_names())
    if args.json:
        print_json({"devices": [{**asdict(p), "builtin": p.name in builtin} for p in profiles]})
        return EXIT_OK
    rows = [[heading for _, heading in COLUMNS]]
    rows += [[_cell(getattr(p, field)) for field, _ in COLUMNS] for p in profiles]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("\nUse one with --device NAME or --env device:NAME[,shot=N]; add your own with --profiles FILE.toml.")
    return EXIT_OK


__all__ = ["COLUMNS", "add_parser", "run"]
