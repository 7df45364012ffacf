"""The instability metric of a results store or dataset that does not fit in memory.

Two passes, memory bounded by a batch and a bucket, not by the results:

1. Stream the rows (the columns the metric needs) as record batches; give each
   (environment, repeat) pair a column number and send each row to one of ``B`` spill
   files (Arrow IPC, in a temporary folder) by a hash of its image id, so every
   observation of an image lands in the same file. ``B`` is the row count over
   ``bucket_rows``; with one bucket nothing is spilled.
2. Read one bucket at a time, lay it out as ``[images, columns, k]`` ranked classes and
   feed it to :class:`~instab.metrics.streaming.InstabilityCounter`, which runs the C++
   kernel on it and keeps only counts.

The counts, rate and per-column accuracy equal those of :func:`instab.instability` on
:meth:`~instab.io.store.ResultStore.load`'s arrays, exactly.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instab._shared.validation import check_threads
from instab.io import table
from instab.io.dataset import BATCH_ROWS, ResultDataset, list_cells, open_results
from instab.io.store import ResultStore
from instab.metrics.streaming import InstabilityCounter, StreamedInstability

#: Rows per bucket by default: a peak RSS of about 330 MB on a 10 M-row top-5 dataset (benchmarks/bench_streaming.py).
BUCKET_ROWS = 1_000_000
_COLUMNS = ["image_id", "environment", "repeat", "labels", "classes"]
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class StreamedReport:
    """:func:`streamed_instability`'s answer: the metric for each k, the model, the columns and what was read."""

    model: str
    model_hash: str
    columns: list[tuple[str, int]]  # (environment, repeat) of each accuracy entry, in order of first appearance
    metrics: dict[int, StreamedInstability]  # by k
    rows: int
    buckets: int
    errors: int  # rows without prediction (failed items): not observed
    width: int  # classes stored per item, at most
    columns_read: int  # (environment, repeat) pairs in the results: more than ``columns`` with first_shots

    @property
    def metric(self) -> StreamedInstability:
        """The metric for the first k asked for."""
        return next(iter(self.metrics.values()))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for JSON): per k, the counts, the rate with its 95% Wilson interval, accuracy per column."""
        headline = ("across devices, first shot of each" if len(self.columns) < self.columns_read
                    else "across all environments")
        out: dict[str, Any] = {"model": self.model, "model_hash": self.model_hash, "rows": self.rows,
                               "failed_rows": self.errors, "buckets": self.buckets, "headline": headline,
                               "instability": {}}
        for k, m in self.metrics.items():
            lo, hi = m.interval()
            acc_lo, acc_hi = m.accuracy_intervals()
            out["instability"][f"top{k}"] = {
                "k": k, "rate": m.rate, "rate_ci95": [lo, hi], "n_unstable": m.n_unstable, "n_images": m.n_images,
                "n_always_correct": m.n_always_correct, "n_always_wrong": m.n_always_wrong, "images_seen": m.n_seen,
                "environments": [{"environment": env, "repeat": rep, "observed": int(m.env_observed[j]),
                                  "correct": int(m.env_correct[j]), "accuracy": float(m.accuracy[j]),
                                  "accuracy_ci95": [float(acc_lo[j]), float(acc_hi[j])]}
                                 for j, (env, rep) in enumerate(self.columns)]}
        return out


def image_hash(ids: Any) -> np.ndarray:
    """uint64 [n]: a hash of each string of ``ids`` (a pyarrow string array), the same in every batch and run."""
    pa = table.require("pyarrow")
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]].astype(np.uint64)
    lengths = np.diff(offsets)
    starts = offsets[:-1] - offsets[0]
    sums = np.zeros(len(arr), dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping arithmetic is the point of a hash
        if len(data):
            weights = np.cumprod(np.full(int(lengths.max()), 1099511628211, dtype=np.uint64))
            terms = data * weights[np.arange(len(data)) - np.repeat(starts, lengths)]
            filled = lengths > 0  # reduceat reads one element for an empty string: those stay 0
            sums[filled] = np.add.reduceat(terms, starts[filled])
        h = (sums ^ lengths.astype(np.uint64)) * _MIX
        return h ^ (h >> np.uint64(29))


def _batches(source: ResultStore | ResultDataset, identity: str, batch_rows: int) -> Iterator[Any]:
    """The metric's columns of one model's rows, as record batches."""
    if isinstance(source, ResultDataset):
        yield from source.scan(identity, _COLUMNS, batch_rows=batch_rows)
        return
    pa = table.require("pyarrow")
    schema = pa.schema([table.arrow_schema().field(c) for c in _COLUMNS])
    for chunk in source.iter_rows(identity, chunk_rows=batch_rows):
        columns = table.to_columns(chunk)
        yield pa.RecordBatch.from_pydict({c: columns[c] for c in _COLUMNS}, schema=schema)


class _Columns:
    """Global column numbers of (environment, repeat) pairs, in order of first appearance."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, int], int] = {}

    def of(self, batch: Any) -> np.ndarray:
        """The column number of each row of ``batch`` (new pairs numbered as they first appear)."""
        pc = table.require("pyarrow.compute")
        envs = pc.dictionary_encode(batch.column("environment"))
        codes = np.asarray(envs.indices, dtype=np.int64)
        repeat = np.asarray(batch.column("repeat"), dtype=np.int64)
        names = envs.dictionary.to_pylist()
        pairs, first, inverse = np.unique(np.stack([codes, repeat], 1).reshape(-1, 2), axis=0, return_index=True,
                                          return_inverse=True)
        for i in np.argsort(first, kind="stable"):
            self.index.setdefault((names[pairs[i, 0]], int(pairs[i, 1])), len(self.index))
        lookup = np.array([self.index[(names[c], int(r))] for c, r in pairs], dtype=np.int64)
        return lookup[inverse.reshape(-1)]


def streamed_instability(results: str | os.PathLike[str], model: str | None = None, *, k: int | Sequence[int] = 1,
                         first_shots: bool = False, bucket_rows: int = BUCKET_ROWS, batch_rows: int = BATCH_ROWS,
                         tmp_dir: str | os.PathLike[str] | None = None, threads: int | None = None) -> StreamedReport:
    """The instability metric of one model's results, streamed (see the module's docstring).

    Parameters
    ----------
    results
        A results store (SQLite) or a results dataset (folder).
    model
        Its name, hash or a unique prefix of the hash (needed when several are stored).
    k
        Top-k correctness (at most the classes stored per item), or several k, counted in the same two
        passes (those above the classes stored are then left out).
    first_shots
        Count each environment's first shot only (its smallest repeat), as ``instab report``'s headline
        does when some environment was scored in several repeat shots.
    bucket_rows, batch_rows
        Rows per bucket (the working set of the kernel) and per record batch read.
    tmp_dir
        Where the spill files go (default: the system's temporary folder).
    threads
        Threads of the kernel (None: all cores).
    """
    threads = check_threads(threads)  # before any file is read
    ks = [k] if isinstance(k, int) else list(k)
    for name, value in [*(("k", v) for v in ks), ("bucket_rows", bucket_rows), ("batch_rows", batch_rows)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    with open_results(results) as source, tempfile.TemporaryDirectory(prefix="instab-metric-", dir=tmp_dir) as tmp:
        identity, name = source.resolve(model)
        n_buckets = max(1, -(-source.count(identity) // bucket_rows))
        spill = _Spill(Path(tmp), n_buckets)
        try:
            for batch in _batches(source, identity, batch_rows):
                spill.add(batch)
        finally:
            spill.close()
        if isinstance(k, int) and k > spill.width:
            raise ValueError(f"k: must be in 1..{spill.width} (the classes stored per item), got {k}")
        pairs = sorted(spill.columns.index, key=spill.columns.index.__getitem__)
        keep = _first_shots(pairs) if first_shots else list(range(len(pairs)))
        counters = [InstabilityCounter(max(len(keep), 1), v, threads=threads) for v in ks if v <= spill.width]
        for bucket in spill.buckets():
            _count_bucket(counters, bucket, len(pairs), spill.width, keep)
    return StreamedReport(name, identity, [pairs[j] for j in keep], {c.k: c.result() for c in counters}, spill.rows,
                          n_buckets, spill.errors, spill.width, len(pairs))


def _first_shots(pairs: list[tuple[str, int]]) -> list[int]:
    """The column of each environment's first shot (its smallest repeat), in column order."""
    first: dict[str, tuple[int, int]] = {}
    for j, (env, rep) in enumerate(pairs):
        if env not in first or rep < first[env][0]:
            first[env] = (rep, j)
    return sorted(j for _, j in first.values())


class _Spill:
    """Pass 1: rows to buckets by image (kept in memory when there is one bucket, else in Arrow IPC files)."""

    def __init__(self, folder: Path, n_buckets: int) -> None:
        self.folder, self.n_buckets = folder, n_buckets
        self.columns = _Columns()
        self.kept: list[Any] = []
        self.writers: dict[int, Any] = {}
        self.rows = self.errors = self.width = 0

    def add(self, batch: Any) -> None:
        pa, pc = table.require("pyarrow"), table.require("pyarrow.compute")
        self.rows += batch.num_rows
        self.errors += batch.column("classes").null_count
        self.width = max(self.width, int(pc.max(pc.list_value_length(batch.column("classes"))).as_py() or 0))
        out = pa.RecordBatch.from_arrays(
            [batch.column("image_id"), pa.array(self.columns.of(batch)), batch.column("labels"),
             batch.column("classes")], names=["image_id", "column", "labels", "classes"])
        if self.n_buckets == 1:
            self.kept.append(out)
            return
        ipc = table.require("pyarrow.ipc")
        bucket = (image_hash(batch.column("image_id")) % np.uint64(self.n_buckets)).astype(np.int64)
        for b in np.unique(bucket).tolist():
            if b not in self.writers:
                self.writers[b] = ipc.new_file(str(self.folder / f"{b}.arrow"), out.schema)
            self.writers[b].write_batch(out.filter(pa.array(bucket == b)))

    def close(self) -> None:
        for w in self.writers.values():
            w.close()

    def buckets(self) -> Iterator[Any]:
        """Each bucket's rows as one table, one bucket in memory at a time."""
        pa, ipc = table.require("pyarrow"), table.require("pyarrow.ipc")
        if self.kept:
            yield pa.Table.from_batches(self.kept)
        for b in sorted(self.writers):
            with pa.memory_map(str(self.folder / f"{b}.arrow")) as f:
                yield ipc.open_file(f).read_all()


def _count_bucket(counters: list[InstabilityCounter], t: Any, n_columns: int, width: int, keep: list[int]) -> None:
    """One bucket's rows as ``[images, columns, width]`` ranked classes (every observation of its images), counted."""
    pa, pc = table.require("pyarrow"), table.require("pyarrow.compute")
    codes = np.asarray(pc.dictionary_encode(t.column("image_id")).combine_chunks().indices)
    images, image_of_row = np.unique(codes, return_inverse=True)
    image_of_row = image_of_row.reshape(-1).astype(np.int32)
    col = np.asarray(t.column("column"), dtype=np.int32)
    ranked = np.full((len(images), n_columns, max(width, 1)), -1, dtype=np.int32)
    classes = t.column("classes").combine_chunks()
    lengths = np.asarray(pc.fill_null(pc.list_value_length(classes), 0))
    values = np.asarray(pc.list_flatten(classes))
    full = lengths == width
    if full.sum() * width == len(values):  # the usual case: every list holds all the classes stored
        ranked[image_of_row[full], col[full]] = values.reshape(-1, width)
    else:
        rows, pos, values = list_cells(classes)
        ranked[image_of_row[rows], col[rows], pos] = values
    last = np.zeros(len(images), dtype=np.int64)
    np.maximum.at(last, image_of_row, np.arange(len(image_of_row)))  # an image's latest labels win, as in load()
    labels = [tuple(x) for x in t.column("labels").take(pa.array(last)).to_pylist()]
    if len(keep) < n_columns:
        ranked = np.ascontiguousarray(ranked[:, keep])
    for counter in counters:
        counter.add(ranked, labels)


__all__ = ["BUCKET_ROWS", "StreamedReport", "image_hash", "streamed_instability"]
