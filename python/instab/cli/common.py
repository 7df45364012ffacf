"""What every ``instab`` command shares: exit codes, the usage error, reading the common inputs."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from instab.io.labels import LabeledImage, read_labels_csv
from instab.studies.result import to_plain

#: 0 success; 1 the command ran but some inputs failed (recorded and summarized);
#: 2 bad usage or unusable input (a clear message, never a traceback); 130 Ctrl-C (128 + SIGINT).
EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A problem with the user's arguments or input files (exit code 2)."""


def read_class_names(path: str | None) -> list[str] | None:
    """The ``--class-names`` file: one class name per line (blank lines skipped); None when not given."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--class-names: {path} does not exist")
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def labelled_images(images: str, labels: str, limit: int | None) -> tuple[list[LabeledImage], list[str]]:
    """The usable rows of a labels CSV and the messages of the others; a usage error when none is usable."""
    items, errors = read_labels_csv(labels, images, limit)
    if not items:
        raise UsageError(f"no usable images: {labels} lists none that exist in {images}")
    return items, errors


def check_out_folder(path: str, option: str = "--out") -> Path:
    """Make sure ``path`` is a folder we can write (created if missing), before any work is done."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"{option}: cannot create {folder} or write into it ({exc.strerror or exc})") from None
    return folder


def check_empty_out(path: str, overwrite: bool, option: str = "--out") -> None:
    """Refuse a non-empty output folder unless ``overwrite`` (a usage error naming ``--overwrite``)."""
    folder = Path(path)
    if not overwrite and folder.is_dir() and any(folder.iterdir()):
        raise UsageError(f"{option}: {folder} is not empty; give --overwrite to write into it")


def split_summary(text: str) -> tuple[list[str], list[str]]:
    """A printed summary's headline lines and its indented detail lines (rejected or failed rows)."""
    lines = text.splitlines()
    head = [line.rstrip(":") for line in lines if not line.startswith(" ")]
    return head, [line.strip() for line in lines if line.startswith(" ")]


def float_list(text: str) -> tuple[float, ...]:
    """An argparse type: ``1,3,10`` -> (1.0, 3.0, 10.0); at least one number."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def print_json(data: dict[str, Any]) -> None:
    """``--json``: ``data`` as one JSON object on stdout (NaN and inf as null, numpy values as numbers)."""
    print(json.dumps(to_plain(data), indent=1, default=str, allow_nan=False))


def print_problems(what: str, messages: list[str], shown: int = 10) -> None:
    """``what: N problem(s)`` and the first ``shown`` messages, on stderr (nothing when there are none)."""
    if not messages:
        return
    lines = [f"{what}: {len(messages)} left out or failed:"] + [f"  {m}" for m in messages[:shown]]
    if len(messages) > shown:
        lines.append(f"  ... and {len(messages) - shown} more")
    print("\n".join(lines), file=sys.stderr)


__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "UsageError",
    "check_empty_out",
    "check_out_folder",
    "float_list",
    "labelled_images",
    "print_json",
    "print_problems",
    "read_class_names",
    "split_summary",
]
