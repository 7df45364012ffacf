"""Reading a user's CSV file row by row, so that one bad row never costs the others.

The file is read as bytes and decoded line by line: a UTF-8 BOM (Excel's "CSV
UTF-8") is accepted, a line that is not UTF-8 rejects only the row it belongs to,
and so does a field over the ``csv`` module's size limit. Every row comes with
its line number, so the caller's messages can point at it.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Inclusive range of a SQLite INTEGER: bigger numbers cannot be stored.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class CsvRow:
    """One record: its first line (1-based, the header is line 1) and either its fields or why it is unusable.

    ``fields`` maps each header column to its text (None when the row is short),
    as :class:`csv.DictReader` does.
    """

    line: int
    fields: dict[str, str | None] | None
    error: str | None = None


def check_csv_path(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path; FileNotFoundError / IsADirectoryError with ``what`` in the message otherwise."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{what}: {p} is a folder, not a CSV file")
    if not p.is_file():
        raise FileNotFoundError(f"{what}: {p} does not exist")
    return p


def read_csv(path: str | os.PathLike[str], what: str) -> tuple[list[str], Iterator[CsvRow]]:
    """The header's column names and an iterator over the rows of the CSV file ``path``.

    Blank lines are skipped. ``what`` names the file in the messages; an
    unreadable header is a ValueError (nothing can be read without it).
    """
    p = check_csv_path(path, what)
    bad_lines: dict[int, str] = {}
    records = _records(csv.reader(_decoded_lines(p.read_bytes(), bad_lines)), bad_lines)
    line, header, error = next(records, (1, [], None))
    if error is not None:
        raise ValueError(f"{what}: {p}:{line}: the header is unreadable: {error}")
    return header, _rows(records, header)


def _decoded_lines(data: bytes, bad_lines: dict[int, str]) -> Iterator[str]:
    """The lines of ``data`` as text; an undecodable line is recorded in ``bad_lines`` and passed on replaced."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad_lines[number] = (f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                                 "save the file as UTF-8")
            yield raw.decode("utf-8", "replace")


def _records(reader: Any, bad_lines: dict[int, str]) -> Iterator[tuple[int, list[str], str | None]]:
    """(first line, fields, error) of each non-blank record; the fields are empty where there is an error."""
    last = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the size limit: the reader goes on after it
            first, last = last + 1, reader.line_num
            yield first, [], str(exc)
            continue
        first, last = last + 1, reader.line_num
        if not record:
            continue
        bad = next((bad_lines[n] for n in range(first, last + 1) if n in bad_lines), None)
        yield first, ([] if bad else record), bad


def _rows(records: Iterator[tuple[int, list[str], str | None]], header: list[str]) -> Iterator[CsvRow]:
    for line, values, error in records:
        if error is not None:
            yield CsvRow(line, None, error)
        else:
            yield CsvRow(line, {name: (values[i] if i < len(values) else None) for i, name in enumerate(header)})


def parse_int64(text: str, what: str) -> int:
    """``text`` as an int that SQLite can store (ValueError naming ``what`` otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an integer") from None
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{what}: {text} is out of range (a 64-bit integer)")
    return value


__all__ = ["CsvRow", "INT64_MAX", "INT64_MIN", "check_csv_path", "parse_int64", "read_csv"]
