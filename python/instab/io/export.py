"""Export a results store or dataset as a data file: Parquet or CSV, one row per image x environment x repeat.

The columns are :data:`instab.io.table.COLUMNS`. The results are read a chunk of rows at a
time (:meth:`ResultStore.iter_rows`, :meth:`~instab.io.dataset.ResultDataset.iter_rows`), so
memory stays bounded by a chunk whatever their size: Parquet gets one row group per chunk,
CSV one block of lines. The file is written next to ``out`` and renamed into place at the end,
so an export that fails or is interrupted never leaves a partial file behind.

CSV: the header is :data:`instab.io.table.NAMES`; list columns (``labels``, ``classes``,
``scores``) are ``;``-joined; ``correct`` is ``true``/``false``; a null is an empty field.
Parquet needs pyarrow (``pip install instab[export]``); CSV needs nothing more.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from instab.io import table
from instab.io.dataset import open_results
from instab.io.store import ResultRow

#: The formats :func:`export_store` writes.
FORMATS = ("parquet", "csv")
#: Rows read, converted and written at a time by default.
CHUNK_ROWS = 20_000


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_store` wrote: ``rows`` rows of ``models`` (name, hash) to ``path``."""

    path: Path
    format: str
    rows: int
    chunks: int
    models: list[tuple[str, str]]


def export_store(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    format: str,
    model: str | None = None,
    overwrite: bool = False,
    chunk_rows: int = CHUNK_ROWS,
) -> ExportSummary:
    """Write the results in ``store`` to ``out`` in long format.

    Parameters
    ----------
    store
        A results store (SQLite) or results dataset (folder) written by ``instab score``; opened read-only.
    out
        The file to write; an existing one is replaced only with ``overwrite``.
    format
        ``"parquet"`` or ``"csv"``.
    model
        One model's rows (its name, hash or a unique prefix of the hash); all models when None.
    overwrite
        Replace an existing ``out``.
    chunk_rows
        Rows held in memory at a time (a positive int).

    Raises
    ------
    FileNotFoundError, FileExistsError, IsADirectoryError, ValueError
        A missing store, an existing ``out`` without ``overwrite``, a file that is not a store, an unknown model.
    instab.io.table.MissingDependencyError
        Parquet without pyarrow installed.
    """
    if format not in FORMATS:
        raise ValueError(f"format: {format!r} is not one of {', '.join(FORMATS)}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows: must be a positive int, got {chunk_rows!r}")
    if format == "parquet":
        table.require("pyarrow")  # before any work: the message names the extra
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"--out: {out} is a folder, not a file")
    if out.exists() and not overwrite:
        raise FileExistsError(f"--out: {out} exists; give --overwrite to replace it")
    if not Path(store).exists():
        raise FileNotFoundError(f"results store: {store} does not exist")
    with open_results(store) as db:
        if model is None:
            identity, models = None, db.identities()
            if not models:
                raise ValueError(f"results store: {store} holds no results")
        else:
            identity, name = db.resolve(model)
            models = [(identity, name)]
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(f".{out.name}.part{os.getpid()}")
        try:
            write = _write_parquet if format == "parquet" else _write_csv
            rows, chunks = write(db.iter_rows(identity, chunk_rows=chunk_rows), part)
            os.replace(part, out)
        finally:
            part.unlink(missing_ok=True)
    return ExportSummary(out, format, rows, chunks, [(name, h) for h, name in models])


def _write_parquet(chunks: Iterable[list[ResultRow]], path: Path) -> tuple[int, int]:
    """Each chunk as one row group; returns (rows, chunks)."""
    pq = table.require("pyarrow.parquet")
    schema = table.arrow_schema()
    rows = n_chunks = 0
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in chunks:
            writer.write_table(table.arrow_table(chunk, schema), row_group_size=len(chunk))
            rows, n_chunks = rows + len(chunk), n_chunks + 1
    return rows, n_chunks


def _write_csv(chunks: Iterable[list[ResultRow]], path: Path) -> tuple[int, int]:
    """The header, then each chunk's lines; returns (rows, chunks)."""
    rows = n_chunks = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(table.NAMES)
        for chunk in chunks:
            writer.writerows(csv_records(table.to_columns(chunk)))
            rows, n_chunks = rows + len(chunk), n_chunks + 1
    return rows, n_chunks


def csv_records(columns: dict[str, list[object]]) -> Iterator[list[str]]:
    """The CSV fields of :func:`instab.io.table.to_columns` output, row by row (see the module's docstring)."""
    for values in zip(*(columns[name] for name in table.NAMES), strict=True):
        yield [_csv_field(v) for v in values]


def _csv_field(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(map(str, value))  # scores as the store holds them (7 decimals)
    return str(value)


__all__ = ["CHUNK_ROWS", "FORMATS", "ExportSummary", "csv_records", "export_store"]
