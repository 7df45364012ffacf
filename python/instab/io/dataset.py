"""Results as a Parquet dataset: a folder per model and environment, a file per unit of work.

Layout::

    <root>/_instab.json                                   marker, models, manifest, runs (provenance)
    <root>/<model>-<hash[:12]>/<environment>-<h8>/<run>-<unit>.parquet

Every file holds the columns of :data:`instab.io.table.COLUMNS` (those of ``instab export``),
so ``pandas.read_parquet(root)``, pyarrow or DuckDB read the whole dataset as one table.
Folder names hold no ``=``, so no reader infers hive partitions from them, and names that
begin with ``_`` or ``.`` (the marker, the lock, files being written) are skipped by Parquet readers.

Exactly once, by construction: only the driver of a run writes (it holds ``_instab.lock``);
a run scores only keys (model hash, image, environment, repeat) that no file holds yet; each
key is in one unit of the run, and a unit's file name is fixed by (run, unit). A file is
written under a temporary name and renamed into place, so it is complete or absent; a unit
delivered twice (Ray re-ran a task after a worker died) replaces its file with the same rows.
:meth:`ResultDataset.load` still keeps only the first row of a key, should files have been
copied in by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from instab._shared.provenance import utc_now
from instab.io import table
from instab.io.records import ResultRow, ScoredSet, resolve_identity, stored_scores
from instab.io.store import Key, ResultStore, lock_file

# pyarrow objects are typed Any: it is optional (instab[export] / instab[ray]) and untyped for mypy

#: The layout this instab writes and reads (``format`` in ``_instab.json``).
DATASET_FORMAT = 1
MARKER = "_instab.json"
_LOCK = "_instab.lock"
_SUFFIX = ".parquet"
#: Rows per record batch when a dataset is read in pieces.
BATCH_ROWS = 65_536


def is_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a results dataset: a folder with the ``_instab.json`` marker."""
    return (Path(path) / MARKER).is_file()


def folder_name(text: str, digest: str) -> str:
    """A folder name for a model or an environment: its text made file-safe (no ``=``), then ``-digest``."""
    return f"{re.sub(r'[^A-Za-z0-9.+-]+', '_', text)[:60]}-{digest}"


def environment_digest(environment: str) -> str:
    """The 8 hex digits that tell environments apart whose file-safe names are the same."""
    return hashlib.sha256(environment.encode()).hexdigest()[:8]


def encode_part(rows: Iterable[table.Row]) -> bytes:
    """Rows as the bytes of one dataset file (Parquet, the long-format schema), e.g. built on a worker.

    Scores are rounded as a SQLite store rounds them (:func:`~instab.io.records.stored_scores`), so a
    dataset and a store of the same results hold the same values.
    """
    pa = table.require("pyarrow")
    pq = table.require("pyarrow.parquet")
    columns = table.to_columns(rows)
    columns["scores"] = [None if s is None else stored_scores(s) for s in columns["scores"]]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pydict(columns, schema=table.arrow_schema()), sink)
    return bytes(sink.getvalue())


class ResultDataset:
    """A results dataset; use as a context manager or call close().

    Parameters
    ----------
    root
        The dataset's folder.
    create
        Make it (folder and marker) when missing, and take the writer's lock
        (:class:`~instab.io.store.StoreBusyError` when another run holds it).
        A folder that holds other files and no marker is refused. Without
        ``create`` the dataset is opened for reading only and must exist.
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = False) -> None:
        table.require("pyarrow.dataset")  # before anything: the message names the extra
        self.root = Path(root)
        self._lock_fd: int | None = None
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"results dataset: {self.root} is a file, not a dataset folder")
        if not create:
            if not is_dataset(self.root):
                raise FileNotFoundError(f"results dataset: {self.root} is not a results dataset (no {MARKER})")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            if not is_dataset(self.root) and any(p.name != _LOCK for p in self.root.iterdir()):
                raise ValueError(f"results dataset: {self.root} is a folder of other files (no {MARKER}); "
                                 "refusing to write into it: give an empty or new folder")
            self._lock_fd = lock_file(
                self.root / _LOCK, f"results dataset: {self.root} is in use by another instab run ({{holder}}); "
                "wait for it to finish, or give another --out (a killed run never holds it)")
            if not is_dataset(self.root):
                self._write_meta({"format": DATASET_FORMAT, "created": utc_now(), "models": {}})
        version = self.meta().get("format")
        if version != DATASET_FORMAT:
            self.close()
            raise ValueError(f"results dataset: {self.root} has format {version}; this instab reads format "
                             f"{DATASET_FORMAT}")

    def __enter__(self) -> ResultDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the writer's lock (nothing else is held open)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ meta

    def meta(self) -> dict[str, Any]:
        """``_instab.json``: format, creation time, models (hash -> name), manifest, runs (provenance), ..."""
        try:
            data = json.loads((self.root / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"results dataset: cannot read {self.root / MARKER} ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"results dataset: {self.root / MARKER} is not a JSON object")
        return data

    def set_meta(self, key: str, value: object) -> None:
        """Store ``value`` (JSON) under ``key`` in ``_instab.json`` (replaced atomically)."""
        self._write_meta({**self.meta(), key: value})

    def _write_meta(self, data: dict[str, Any]) -> None:
        write_atomic(self.root / MARKER, json.dumps(data, indent=1).encode())

    def add_model(self, identity: str, name: str) -> None:
        """Record a model's name under its hash (before its first file is written)."""
        models = dict(self.meta().get("models", {}))
        if models.get(identity) != name:
            self.set_meta("models", {**models, identity: name})

    # ------------------------------------------------------------------ files

    def part_path(self, identity: str, name: str, environment: str, run: str, unit: int) -> Path:
        """Where unit ``unit`` of run ``run`` puts its rows of model ``name`` (hash ``identity``) in ``environment``."""
        return (self.root / folder_name(name, identity[:12]) / folder_name(environment, environment_digest(
            environment)) / f"{run}-{unit:07d}{_SUFFIX}")

    def files(self, identity: str | None = None) -> list[Path]:
        """The dataset's files (of one model, by hash), in the order they were written: by run, then unit."""
        models = [d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))]
        if identity is not None:
            models = [d for d in models if d.name.endswith("-" + identity[:12])]
        found = [f for d in models for f in d.glob(f"*/*{_SUFFIX}") if not f.name.startswith(("_", "."))]
        return sorted(found, key=lambda f: (f.name, str(f)))

    def scan(self, identity: str | None = None, columns: list[str] | None = None, *,
             batch_rows: int = BATCH_ROWS) -> Iterator[Any]:
        """The rows (of one model) as ``pyarrow.RecordBatch`` es of ``columns`` (all: None), in file order.

        File by file, row group by row group: memory holds one batch (a dataset-wide scan with a filter
        expression was measured to hold hundreds of MB more on a 10 M-row dataset).
        """
        pc, pq = table.require("pyarrow.compute"), table.require("pyarrow.parquet")
        names = list(table.NAMES if columns is None else columns)
        wanted = names if identity is None or "model_hash" in names else [*names, "model_hash"]
        # model_hash only to filter on: read as a dictionary (one string per file, not one per row)
        dictionary = None if "model_hash" in names else ["model_hash"]
        for f in self.files(identity):
            for batch in pq.ParquetFile(f, read_dictionary=dictionary).iter_batches(batch_size=batch_rows,
                                                                                     columns=wanted):
                if identity is not None:
                    mine = pc.equal(batch.column("model_hash"), identity)
                    if not pc.all(mine).as_py():  # a folder holds one model: this is for a hash-prefix twin
                        batch = batch.filter(mine)
                    if not batch.num_rows:
                        continue
                yield batch.select(names)

    def read(self, identity: str | None = None, columns: list[str] | None = None) -> Any:
        """The rows (of one model) as one ``pyarrow.Table`` (the long-format schema, or ``columns``)."""
        pa = table.require("pyarrow")
        schema = table.arrow_schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        return pa.Table.from_batches(list(self.scan(identity, columns)), schema=schema)

    # ------------------------------------------------------------------ reading

    def identities(self) -> list[tuple[str, str]]:
        """(model_hash, name) of every model with rows in the dataset, by name."""
        models = self.meta().get("models", {})
        return sorted(((h, m) for h, m in models.items() if self.files(h)), key=lambda x: (x[1], x[0]))

    def resolve(self, model: str | None = None) -> tuple[str, str]:
        """(model_hash, name) of the model named by ``model``: its hash, a unique prefix of it, or its name."""
        return resolve_identity(self.identities(), model, str(self.root))

    def count(self, model: str | None = None) -> int:
        """Rows in the files (from their footers), of all models or of one (by hash or name)."""
        pq = table.require("pyarrow.parquet")
        if model is None:
            files = self.files()
        else:
            files = [f for h, name in self.identities() if model in (h, name) for f in self.files(h)]
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    def stored_keys(self, identity: str) -> set[Key]:
        """Keys (image, environment, repeat) that model ``identity`` has rows for (scored or failed)."""
        keys: set[Key] = set()
        for batch in self.scan(identity, ["image_id", "environment", "repeat"]):
            cols = [batch.column(i).to_pylist() for i in range(3)]
            keys.update(zip(*cols, strict=True))
        return keys

    def iter_rows(self, identity: str | None = None, *, chunk_rows: int = 20_000) -> Iterator[list[ResultRow]]:
        """The rows in file order, ``chunk_rows`` at a time, as :class:`~instab.io.records.ResultRow` s
        (what :meth:`instab.io.store.ResultStore.iter_rows` yields for the same results, scores included):
        all models, or the one hashed ``identity``."""
        for batch in self.scan(identity, batch_rows=chunk_rows):
            c = {name: batch.column(name).to_pylist() for name in table.NAMES}
            # float32 scores back to the decimals they were rounded to: the store's values, exactly
            scores = [None if s is None else stored_scores(s) for s in c["scores"]]
            yield [ResultRow(c["model"][i], c["image_id"][i], c["environment"][i], c["repeat"][i], c["path"][i],
                             tuple(c["labels"][i]), c["group"][i], c["classes"][i], scores[i], c["error"][i],
                             c["model_hash"][i], c["k"][i]) for i in range(batch.num_rows)]

    def load(self, model: str | None = None) -> ScoredSet:
        """All rows of one model as arrays (the only model when there is one; else by hash or name), like
        :meth:`instab.io.store.ResultStore.load`: images and columns in the order they first appear."""
        identity, name = self.resolve(model)
        return scored_set(self.read(identity), name, identity)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` under a temporary ``.``-name in its folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part{os.getpid()}")
    try:
        part.write_bytes(data)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def open_results(path: str | os.PathLike[str]) -> ResultStore | ResultDataset:
    """A results store (SQLite file) or a results dataset (folder), opened for reading."""
    if not Path(path).exists():
        raise FileNotFoundError(f"results: {path} does not exist")
    if Path(path).is_dir():
        return ResultDataset(path)
    return ResultStore(path, readonly=True)


def _first_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the first row of each distinct key (row of ``keys``), in order of first appearance; each row's key index
    in that order)."""
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)]


def cell_index(t: Any) -> tuple[list[str], list[tuple[str, int]], np.ndarray, np.ndarray]:
    """(image ids, (environment, repeat) columns, each row's image index, each row's column index) of a table of
    results, both in order of first appearance."""
    pc = table.require("pyarrow.compute")
    images = pc.dictionary_encode(t.column("image_id")).combine_chunks()
    first_image, image_of_row = _first_index(np.asarray(images.indices, dtype=np.int64))
    image_ids = t.column("image_id").take(first_image).to_pylist()
    envs = pc.dictionary_encode(t.column("environment")).combine_chunks()
    pairs = np.stack([np.asarray(envs.indices, dtype=np.int64), np.asarray(t.column("repeat"), dtype=np.int64)], 1)
    first_pair, col_of_row = _first_index(pairs.reshape(-1, 2))
    env, rep = t.column("environment").take(first_pair).to_pylist(), t.column("repeat").take(first_pair).to_pylist()
    return image_ids, list(zip(env, map(int, rep), strict=True)), image_of_row, col_of_row


def list_cells(column: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A list column's (row of each value, position of each value in its list, the values), nulls as empty."""
    pc = table.require("pyarrow.compute")
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    lengths = np.asarray(pc.fill_null(pc.list_value_length(arr), 0), dtype=np.int64)
    values = np.asarray(pc.list_flatten(arr))
    rows = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return rows, np.arange(len(values)) - np.repeat(starts, lengths), values


def scored_set(t: Any, name: str, identity: str) -> ScoredSet:
    """One model's rows (a table of the long-format schema, in stored order) as a :class:`ScoredSet`, with
    :meth:`instab.io.store.ResultStore.load`'s rules: a row's latest labels and group win, failed rows are errors."""
    image_ids, columns, img, col = cell_index(t)
    cell = img * max(len(columns), 1) + col
    _, keep = np.unique(cell, return_index=True)  # the first row of each key (see the module's docstring)
    kept = np.zeros(len(cell), dtype=bool)
    kept[keep] = True
    error = t.column("error").to_pylist()
    failed = np.array([e is not None for e in error], dtype=bool) | np.asarray(t.column("classes").is_null())
    rows, pos, classes = list_cells(t.column("classes"))
    _, _, scores = list_cells(t.column("scores"))
    width = int(pos.max()) + 1 if len(pos) else 1
    n, m = len(image_ids), len(columns)
    ranked = np.full((n, m, width), -1, dtype=np.int64)
    top = np.full((n, m, width), np.nan, dtype=np.float32)
    good = kept[rows] & ~failed[rows]
    ranked[img[rows[good]], col[rows[good]], pos[good]] = classes[good]
    top[img[rows[good]], col[rows[good]], pos[good]] = scores[good]
    paths = np.full((n, m), None, dtype=object)
    ks = np.full((n, m), -1, dtype=np.int64)
    path, k = t.column("path").to_pylist(), t.column("k").to_pylist()
    for r in np.flatnonzero(kept):
        paths[img[r], col[r]], ks[img[r], col[r]] = path[r], -1 if k[r] is None else k[r]
    labels_col, group = t.column("labels").to_pylist(), t.column("group").to_pylist()
    labels: list[tuple[int, ...]] = [()] * n
    groups = np.zeros(n, dtype=np.int64)
    grouped = np.zeros(n, dtype=bool)
    for r in np.flatnonzero(kept):  # in stored order: the latest labels and group of an image win
        labels[img[r]] = tuple(labels_col[r])
        if group[r] is not None:
            groups[img[r]], grouped[img[r]] = group[r], True
    env, rep, image = t.column("environment").to_pylist(), t.column("repeat").to_pylist(), t.column("image_id")
    image_list = image.to_pylist()
    errors = [(image_list[r], env[r], int(rep[r]), error[r] or "no prediction")
              for r in np.flatnonzero(kept & failed)]
    return ScoredSet(name, image_ids, columns, ranked, top, labels, groups if grouped.any() else None, errors,
                     identity, paths, ks, grouped)


__all__ = [
    "BATCH_ROWS",
    "DATASET_FORMAT",
    "MARKER",
    "ResultDataset",
    "cell_index",
    "encode_part",
    "environment_digest",
    "folder_name",
    "is_dataset",
    "list_cells",
    "open_results",
    "scored_set",
    "write_atomic",
]
