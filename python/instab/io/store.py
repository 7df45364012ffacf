"""The results store: one SQLite row per (model, image, environment, repeat).

A model is identified by its content (``model_hash``: SHA-256 of its serialized
graph and spec, see :func:`model_hash`), never by its name alone, so two model
files that share a name, or a model replaced in place, never share results.

SQLite in WAL mode; every batch is written in one transaction keyed on the
primary key, so a run killed at any point (even SIGKILL) loses at most the
batch in flight, and a re-run resumes by skipping the keys already stored: no
duplicated and no lost rows. One writer at a time:
a writer holds an advisory lock on ``<store>.lock`` (released by the OS when
the process dies, so a killed run never leaves a stale lock); readers are never
blocked, and a read-only store opens with ``readonly=True``.

A database that is not an instab store is never written to: the ``meta`` table
holds the schema marker ``instab_schema`` (:data:`SCHEMA_VERSION`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from instab._shared.provenance import sha256_hex, utc_now
from instab.io.records import ResultRow, ScoredSet, resolve_identity, stored_scores

if TYPE_CHECKING:
    from instab.models import Model

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock: writers are not locked there
    fcntl = None  # type: ignore[assignment]  # no module here: users check for None

#: The store layout this instab writes and reads (the ``instab_schema`` entry of ``meta``).
SCHEMA_VERSION = 2
_SCHEMA_KEY = "instab_schema"

_TABLES = ("""
CREATE TABLE IF NOT EXISTS results (
    model_hash TEXT NOT NULL,      -- the model's identity: SHA-256 of its graph and spec (see model_hash())
    model TEXT NOT NULL,           -- its name (file stem or built-in name), for people
    image_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    repeat INTEGER NOT NULL DEFAULT 0,
    path TEXT,
    labels TEXT NOT NULL,          -- ';'-separated class indices
    grp INTEGER,                   -- optional group key (angle, ...)
    k INTEGER,                     -- classes asked for when it was scored
    classes TEXT,                  -- JSON list: top-k classes, best first (NULL on error)
    scores TEXT,                   -- JSON list: their scores
    error TEXT,                    -- why the item could not be scored, else NULL
    PRIMARY KEY (model_hash, image_id, environment, repeat)
)""", "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
#: The tables of a store, as SQL.
SCHEMA = ";\n".join(_TABLES) + ";\n"
_COLUMNS = "model_hash, model, image_id, environment, repeat, path, labels, grp, k, classes, scores, error"
_INSERT = f"INSERT OR IGNORE INTO results ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
_UPSERT = (f"INSERT INTO results ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
           "ON CONFLICT (model_hash, image_id, environment, repeat) DO UPDATE SET model = excluded.model, "
           "path = excluded.path, labels = excluded.labels, grp = excluded.grp, k = excluded.k, "
           "classes = excluded.classes, scores = excluded.scores, error = excluded.error")
# What one row's values can raise when bound (e.g. an int beyond SQLite's 64 bits): that row alone is rejected.
_ROW_ERRORS = (OverflowError, ValueError, TypeError, sqlite3.InterfaceError, sqlite3.IntegrityError)

Key = tuple[str, str, int]  # (image_id, environment, repeat)


class StoreBusyError(OSError):
    """Another process is writing to the store."""


class StoreWriteError(OSError):
    """The store cannot be written (the disk is full, an I/O error, a read-only file); what it holds is kept."""


def lock_file(path: Path, busy: str) -> int | None:
    """Hold an exclusive advisory lock on ``path`` (created) for this process: its file descriptor (close it to
    release; the OS releases it when the process dies), None where the OS has no flock.

    :class:`StoreBusyError` when another process holds it; ``busy`` is its message, ``{holder}`` replaced by what
    the holder wrote into the file (its pid and start time).
    """
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreBusyError(busy.replace("{holder}", holder)) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} since {utc_now()}".encode())
    return fd


def model_hash(model: Model) -> str:
    """A model's identity in the store: SHA-256 of its serialized ONNX graph and its spec.

    Two files with the same name but different content (or one file replaced
    in place) get different hashes; the same graph loaded twice gets the same.
    """
    spec = json.dumps(dataclasses.asdict(model.spec), sort_keys=True).encode()
    return sha256_hex(model.serialized() + b"\0" + spec)


@dataclass(frozen=True)
class StoredItem:
    """What the store holds for one key, without the predictions (see :meth:`ResultStore.stored`)."""

    path: str | None
    labels: tuple[int, ...]
    group: int | None
    k: int | None
    error: str | None


class ResultStore:
    """A results database; use as a context manager or call close().

    Parameters
    ----------
    path
        The SQLite file; created (with its folder) unless ``readonly``.
    readonly
        Open for reading only (``mode=ro``): works on a read-only file or folder and
        never changes the file. Otherwise the store is locked for writing:
        :class:`StoreBusyError` when another process holds it.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._lock_fd: int | None = None
        if self.path.is_dir():
            raise IsADirectoryError(f"results store: {self.path} is a folder, not a SQLite file")
        if readonly and not self.path.is_file():
            raise FileNotFoundError(f"results store: {self.path} does not exist")
        self.db = self._connect()
        try:
            self._check_schema()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _connect(self) -> sqlite3.Connection:
        """The connection (autocommit: transactions are explicit, see :meth:`_transaction`)."""
        if self.readonly:
            uri = self.path.resolve().as_uri()
            try:
                db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None)
                db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
                return db
            except sqlite3.OperationalError:
                # A WAL store in a folder we cannot write: its -shm file cannot be made; read the file as it is.
                return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
            except sqlite3.DatabaseError as exc:
                raise ValueError(f"results store: {self.path} is not a usable SQLite database ({exc})") from None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def _check_schema(self) -> None:
        """Refuse anything but an instab store of this schema; make an empty file one (writers only)."""
        try:
            tables = {name for (name,) in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
            marker = None
            if "meta" in tables:
                row = self.db.execute("SELECT value FROM meta WHERE key = ?", (_SCHEMA_KEY,)).fetchone()
                marker = json.loads(row[0]) if row else None
        except sqlite3.OperationalError as exc:  # e.g. a read-only file opened for writing
            raise ValueError(f"results store: cannot open {self.path} ({exc})") from None
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise ValueError(f"results store: {self.path} is not a usable SQLite database ({exc})") from None
        fresh = "delete it, or give another --out, to start a fresh store"
        if marker is None and "results" in tables:
            raise ValueError(f"results store: {self.path} was written by an older instab (schema 1, results keyed "
                             f"by model name); this instab reads schema {SCHEMA_VERSION}: {fresh}")
        if marker is None and tables:
            raise ValueError(f"results store: {self.path} is not an instab results store (it has table(s) "
                             f"{', '.join(sorted(tables))}); refusing to write into it")
        if marker is not None and marker != SCHEMA_VERSION:
            raise ValueError(f"results store: {self.path} has schema {marker}; this instab reads schema "
                             f"{SCHEMA_VERSION}: use the instab that wrote it, or {fresh}")
        if self.readonly:
            if marker is None:
                raise ValueError(f"results store: {self.path} is empty (not an instab results store)")
            return
        self._lock()
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if marker is None:
                with self._transaction():
                    for statement in _TABLES:
                        self.db.execute(statement)
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                                    (_SCHEMA_KEY, json.dumps(SCHEMA_VERSION)))
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", ("created", json.dumps(utc_now())))
        except sqlite3.DatabaseError as exc:  # e.g. the disk is full
            self.close()
            raise ValueError(f"results store: {self.path}: cannot set it up ({exc})") from None

    def _lock(self) -> None:
        """Take the writer's lock on ``<store>.lock`` (flock: the OS releases it when the process dies)."""
        self._lock_fd = lock_file(
            self.path.with_name(self.path.name + ".lock"),
            f"results store: {self.path.name} is in use by another instab run ({{holder}}); wait for it to "
            "finish, or give another --out (a killed run never holds it)")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction; a database failure (disk full, I/O error, ...) becomes a StoreWriteError."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # SQLite may have rolled back already (e.g. on a full disk)
                    self.db.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError:
            raise  # a row's values: the caller's business
        except sqlite3.DatabaseError as exc:
            raise StoreWriteError(f"results store: cannot write to {self.path} ({exc})") from None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database and release the writer's lock."""
        if getattr(self, "db", None) is not None:
            self.db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ meta

    def set_meta(self, key: str, value: object) -> None:
        """Store ``value`` (JSON) under ``key`` in the ``meta`` table."""
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self) -> dict[str, object]:
        """The ``meta`` table: the schema marker, creation time, manifest, runs (provenance), ..."""
        return {k: json.loads(v) for k, v in self._read("SELECT key, value FROM meta")}

    # ------------------------------------------------------------------ writing

    def write(self, rows: Iterable[ResultRow], *, replace: bool = False, rejected: list[str] | None = None) -> int:
        """Write rows in one transaction; returns how many rows were written.

        Without ``replace`` a key already stored is kept as it is; with it, the
        stored row is overwritten in place (its position in :meth:`load` kept).
        A row that cannot be stored (e.g. an integer beyond 64 bits) does not
        cost the others: it is stored as an error row where its key allows and
        its message appended to ``rejected``.
        """
        rows = list(rows)
        sql = _UPSERT if replace else _INSERT
        try:
            values = [_values(r) for r in rows]
            with self._transaction():
                before = self.db.total_changes
                self.db.executemany(sql, values)
                return self.db.total_changes - before
        except _ROW_ERRORS:
            pass  # some row cannot be stored: write them one by one below
        written = 0
        with self._transaction():
            for r in rows:
                before = self.db.total_changes
                try:
                    self.db.execute(sql, _values(r))
                except _ROW_ERRORS as exc:
                    message = f"cannot store this row ({type(exc).__name__}: {exc})"
                    if rejected is not None:
                        rejected.append(f"{r.image_id} [{r.environment}] repeat {r.repeat}: {message}")
                    failed = ResultRow(r.model, r.image_id, r.environment, r.repeat, r.path, r.labels, None, None,
                                       None, message, r.model_hash, r.k)
                    try:
                        self.db.execute(sql, _values(failed))
                    except _ROW_ERRORS:
                        pass  # not even its key fits: the message above is all that is left of it
                written += self.db.total_changes - before
        return written

    def relabel(self, identity: str, updates: Iterable[tuple[Key, tuple[int, ...], int | None]]) -> int:
        """Set the labels and group of stored keys of model ``identity``; returns how many rows changed."""
        values = [(";".join(map(str, labels)), group, identity, key[0], key[1], int(key[2]))
                  for key, labels, group in updates]
        with self._transaction():
            before = self.db.total_changes
            self.db.executemany("UPDATE results SET labels = ?, grp = ? WHERE model_hash = ? AND image_id = ? "
                                "AND environment = ? AND repeat = ?", values)
            return self.db.total_changes - before

    # ------------------------------------------------------------------ reading

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """All rows of a query; a damaged file is a ValueError naming it."""
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            raise  # not damage: e.g. a locked or vanished file
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None

    def _damaged(self, exc: sqlite3.DatabaseError) -> ValueError:
        return ValueError(f"results store: {self.path} is damaged ({exc}); restore it from a copy, or start a "
                          "fresh store")

    def stored(self, identity: str) -> dict[Key, StoredItem]:
        """What is stored for model ``identity`` (a hash, see :func:`model_hash`), by key."""
        cur = self._read("SELECT image_id, environment, repeat, path, labels, grp, k, error FROM results "
                         "WHERE model_hash = ?", (identity,))
        return {(a, b, int(c)): StoredItem(path, _labels(lab), grp, k, err) for a, b, c, path, lab, grp, k, err in cur}

    def done_keys(self, identity: str) -> set[Key]:
        """Keys already stored for model ``identity`` (scored or failed)."""
        return set(self.stored(identity))

    def models(self) -> list[str]:
        """The names of the stored models (see :meth:`identities` for the models themselves)."""
        return [m for (m,) in self._read("SELECT DISTINCT model FROM results ORDER BY model")]

    def identities(self) -> list[tuple[str, str]]:
        """(model_hash, name) of every stored model, by name."""
        return [(h, m) for h, m in self._read(
            "SELECT DISTINCT model_hash, model FROM results ORDER BY model, model_hash")]

    def count(self, model: str | None = None) -> int:
        """Stored rows, of all models or of one (by hash or name)."""
        if model is None:
            return int(self._read("SELECT COUNT(*) FROM results")[0][0])
        return int(self._read("SELECT COUNT(*) FROM results WHERE model_hash = ? OR model = ?", (model, model))[0][0])

    def resolve(self, model: str | None = None) -> tuple[str, str]:
        """(model_hash, name) of the model named by ``model``: its hash, a unique prefix of it, or its name."""
        return resolve_identity(self.identities(), model, str(self.path))

    def load(self, model: str | None = None) -> ScoredSet:
        """All rows of one model as arrays (the only model when there is one; else by hash or name)."""
        identity, name = self.resolve(model)
        rows = self._read(
            "SELECT image_id, environment, repeat, labels, grp, classes, scores, error, path, k FROM results "
            "WHERE model_hash = ? ORDER BY rowid",
            (identity,),
        )
        image_ids = list(dict.fromkeys(r[0] for r in rows))
        columns = list(dict.fromkeys((r[1], int(r[2])) for r in rows))
        img_index = {x: i for i, x in enumerate(image_ids)}
        col_index = {c: j for j, c in enumerate(columns)}
        k = max((len(json.loads(r[5])) for r in rows if r[5]), default=1)
        ranked = np.full((len(image_ids), len(columns), k), -1, dtype=np.int64)
        top = np.full((len(image_ids), len(columns), k), np.nan, dtype=np.float32)
        paths = np.full((len(image_ids), len(columns)), None, dtype=object)
        ks = np.full((len(image_ids), len(columns)), -1, dtype=np.int64)
        labels: list[tuple[int, ...]] = [()] * len(image_ids)
        groups = np.zeros(len(image_ids), dtype=np.int64)
        grouped = np.zeros(len(image_ids), dtype=bool)
        errors = []
        for image_id, env, rep, lab, grp, classes, scores, error, path, k_asked in rows:
            i, j = img_index[image_id], col_index[(env, int(rep))]
            paths[i, j], ks[i, j] = path, -1 if k_asked is None else k_asked
            labels[i] = _labels(lab)
            if grp is not None:
                groups[i], grouped[i] = grp, True
            if error is not None or classes is None:
                errors.append((image_id, env, int(rep), error or "no prediction"))
                continue
            c = json.loads(classes)
            ranked[i, j, : len(c)] = c
            top[i, j, : len(c)] = json.loads(scores)
        return ScoredSet(name, image_ids, columns, ranked, top, labels, groups if grouped.any() else None, errors,
                         identity, paths, ks, grouped)

    def iter_rows(self, identity: str | None = None, *, chunk_rows: int = 20_000) -> Iterator[list[ResultRow]]:
        """The stored rows in the order they were written, ``chunk_rows`` at a time (memory stays bounded by
        a chunk): all models, or the one whose hash is ``identity`` (see :meth:`resolve`)."""
        where, params = ("", ()) if identity is None else (" WHERE model_hash = ?", (identity,))
        try:
            cursor = self.db.execute(f"SELECT {_COLUMNS} FROM results{where} ORDER BY rowid", params)
            while batch := cursor.fetchmany(chunk_rows):
                yield [ResultRow(m, i, e, int(r), p, _labels(lab), g, None if c is None else json.loads(c),
                                 None if s is None else json.loads(s), err, h, k)
                       for h, m, i, e, r, p, lab, g, k, c, s, err in batch]
        except sqlite3.OperationalError:
            raise  # not damage: e.g. a locked or vanished file
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None


def _labels(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(";") if x)


def _values(r: ResultRow) -> tuple[object, ...]:
    return (
        r.identity, r.model, r.image_id, r.environment, int(r.repeat), r.path, ";".join(map(str, r.labels)),
        None if r.group is None else int(r.group), None if r.k is None else int(r.k),
        None if r.classes is None else json.dumps([int(c) for c in r.classes]),
        None if r.scores is None else json.dumps(stored_scores(r.scores)),
        r.error,
    )


__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "Key",
    "ResultRow",
    "ResultStore",
    "ScoredSet",
    "StoreBusyError",
    "StoreWriteError",
    "StoredItem",
    "lock_file",
    "model_hash",
]
