"""``instab devices list``: the virtual devices and their main parameters; ``instab devices from-raw``: a new one.

``instab devices from-raw FILE --name NAME --out PROFILE.toml`` writes a device
profile with a real camera's sensor, read from one of its raw files (see
:func:`instab.environments.devices.from_raw`); use it with ``--profiles PROFILE.toml``
and ``device:NAME``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from instab.cli.common import EXIT_OK, UsageError, print_json
from instab.environments import devices

#: The columns of the plain listing: profile field and heading.
COLUMNS = (("name", "name"), ("demosaic", "demosaic"), ("codec", "codec"), ("shot_noise", "shot noise"),
           ("read_noise", "read noise"), ("wb_error", "wb error"), ("tone", "tone"), ("gamma", "gamma"),
           ("saturation", "saturation"), ("sharpen", "sharpen"))


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``devices`` command (``list``, ``from-raw``) to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("devices", help="list the virtual devices, or make one from a camera's raw file")
    actions = p.add_subparsers(dest="action", required=True, metavar="{list,from-raw}")
    listing = actions.add_parser("list", help="every device profile and its main parameters")
    listing.add_argument("--profiles", help="TOML file of extra device profiles to list too ([device.NAME] tables)")
    listing.add_argument("--json", action="store_true", help="print them as one JSON object")
    raw = actions.add_parser("from-raw", help="write a device profile from a raw file's own sensor metadata")
    raw.add_argument("file", metavar="FILE", help="a raw file LibRaw reads: DNG, NEF, CR2, CR3, ARW, RAF, ORF, ...")
    raw.add_argument("--name", required=True, help="the profile's name, used as device:NAME")
    raw.add_argument("--out", required=True, help="the TOML file to write (read it with --profiles)")
    raw.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    raw.add_argument("--json", action="store_true", help="also print the profile and its sources as one JSON object")
    p.set_defaults(func=run)
    return p


def _cell(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(format(v, "g") for v in value)
    return format(value, "g") if isinstance(value, float) else str(value)


def run(args: argparse.Namespace) -> int:
    """Run ``instab devices list`` or ``instab devices from-raw``; returns the exit code."""
    if args.action == "from-raw":
        return run_from_raw(args)
    if args.profiles:
        devices.load_profiles(args.profiles)
    profiles = [devices.get(name) for name in devices.names()] + list(devices.HELD_OUT.values())
    builtin = set(devices.builtin_names())
    if args.json:
        print_json({"devices": [{**asdict(p), "builtin": p.name in builtin, "held_out": p.name in devices.HELD_OUT}
                                for p in profiles]})
        return EXIT_OK
    rows = [[heading for _, heading in COLUMNS]]
    rows += [[_cell(getattr(p, field)) for field, _ in COLUMNS] for p in profiles]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"\n{', '.join(devices.HELD_OUT)}: held out (instab mitigate evaluates on them, never trains on them; "
          "not in the default device runs).")
    print("Use one with --device NAME or --env device:NAME[,shot=N]; add your own with --profiles FILE.toml.")
    return EXIT_OK


def run_from_raw(args: argparse.Namespace) -> int:
    """``instab devices from-raw FILE --name NAME --out PROFILE.toml``: read the sensor, write the TOML."""
    out = Path(args.out)
    # Checked before reading the raw file: a usage problem costs no decoding.
    if out.is_dir():
        raise UsageError(f"--out: {out} is a folder, not a file")
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out: {out} exists; give --overwrite to replace it")
    if args.name in devices.builtin_names():
        raise UsageError(f"--name: {args.name} is a built-in device; choose another name")
    profile, sources = devices.from_raw(args.file, args.name)
    header = (f"A device profile made by `instab devices from-raw` from {Path(args.file).name}.\n"
              f"Use it with --profiles {out.name} and device:{profile.name}. After each key: where it came from\n"
              "(read: the file's metadata; estimated: derived from its pixels or LibRaw; default: not in the file).")
    try:
        out.write_text(devices.profile_toml(profile, sources, header), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--out: cannot write {out} ({exc.strerror or exc})") from None
    if args.json:
        print_json({"profile": asdict(profile), "sources": sources, "out": str(out)})
        return EXIT_OK
    guessed = [k for k, v in sources.items() if k in devices.SENSOR_KEYS and not v.startswith("read")]
    print(f"wrote {out}: device:{profile.name}"
          + (f" (not read from the file: {', '.join(guessed)})" if guessed else ""))
    return EXIT_OK


__all__ = ["COLUMNS", "add_parser", "run", "run_from_raw"]
