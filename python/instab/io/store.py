"""The results store: one SQLite row per (model, image, environment, repeat).

SQLite in WAL mode; every batch is written in one transaction with
``INSERT OR IGNORE`` on the primary key, so a run killed at any point (even
SIGKILL) loses at most the batch in flight, and a re-run resumes by skipping
the keys already stored: no duplicated and no lost rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    model TEXT NOT NULL,
    image_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    repeat INTEGER NOT NULL DEFAULT 0,
    path TEXT,
    labels TEXT NOT NULL,          -- ';'-separated class indices
    grp INTEGER,                   -- optional group key (angle, ...)
    classes TEXT,                  -- JSON list: top-k classes, best first (NULL on error)
    scores TEXT,                   -- JSON list: their scores
    error TEXT,                    -- why the item could not be scored, else NULL
    PRIMARY KEY (model, image_id, environment, repeat)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class ResultRow:
    """One scored (or failed) item: ``classes``/``scores`` are None and ``error`` says why when it failed."""

    model: str
    image_id: str
    environment: str
    repeat: int
    path: str
    labels: tuple[int, ...]
    group: int | None
    classes: Sequence[int] | None
    scores: Sequence[float] | None
    error: str | None


@dataclass(frozen=True)
class ScoredSet:
    """Stored results as arrays for :func:`instab.instability`.

    Columns are the distinct (environment, repeat) pairs; ``ranked`` is
    int [n_images, n_columns, k] with -1 where an image was not scored there
    (missing or failed), ``top_scores`` the matching scores (NaN there).
    """

    model: str
    image_ids: list[str]
    columns: list[tuple[str, int]]
    ranked: np.ndarray
    top_scores: np.ndarray
    labels: list[tuple[int, ...]]
    groups: np.ndarray | None
    errors: list[tuple[str, str, int, str]]  # (image_id, environment, repeat, error)

    @property
    def environments(self) -> list[str]:
        return list(dict.fromkeys(env for env, _ in self.columns))


class ResultStore:
    """A results database; use as a context manager or call close()."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"results store: {self.path} is not a usable SQLite database ({exc})") from None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def set_meta(self, key: str, value: object) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self) -> dict[str, object]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def done_keys(self, model: str) -> set[tuple[str, str, int]]:
        """Keys already stored for ``model`` (scored or failed): a resumed run skips them."""
        cur = self.db.execute("SELECT image_id, environment, repeat FROM results WHERE model = ?", (model,))
        return {(a, b, int(c)) for a, b, c in cur}

    def write(self, rows: Iterable[ResultRow]) -> int:
        """Write rows in one transaction; returns how many were new."""
        values = [
            (
                r.model, r.image_id, r.environment, int(r.repeat), r.path, ";".join(map(str, r.labels)), r.group,
                None if r.classes is None else json.dumps([int(c) for c in r.classes]),
                None if r.scores is None else json.dumps([round(float(s), 7) for s in r.scores]),
                r.error,
            )
            for r in rows
        ]
        with self.db:
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?,?,?,?,?)", values)
            return self.db.total_changes - before

    def models(self) -> list[str]:
        return [m for (m,) in self.db.execute("SELECT DISTINCT model FROM results ORDER BY model")]

    def count(self, model: str | None = None) -> int:
        if model is None:
            return int(self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        return int(self.db.execute("SELECT COUNT(*) FROM results WHERE model = ?", (model,)).fetchone()[0])

    def load(self, model: str | None = None) -> ScoredSet:
        """All rows of one model as arrays (the only model when there is one)."""
        models = self.models()
        if not models:
            raise ValueError(f"results store: {self.path} holds no results")
        if model is None:
            if len(models) > 1:
                raise ValueError(f"model: the store holds several models ({', '.join(models)}); name one")
            model = models[0]
        elif model not in models:
            raise ValueError(f"model: {model!r} not in the store (has {', '.join(models)})")
        rows = self.db.execute(
            "SELECT image_id, environment, repeat, labels, grp, classes, scores, error FROM results "
            "WHERE model = ? ORDER BY rowid",
            (model,),
        ).fetchall()
        image_ids = list(dict.fromkeys(r[0] for r in rows))
        columns = list(dict.fromkeys((r[1], int(r[2])) for r in rows))
        img_index = {x: i for i, x in enumerate(image_ids)}
        col_index = {c: j for j, c in enumerate(columns)}
        k = max((len(json.loads(r[5])) for r in rows if r[5]), default=1)
        ranked = np.full((len(image_ids), len(columns), k), -1, dtype=np.int64)
        top = np.full((len(image_ids), len(columns), k), np.nan, dtype=np.float32)
        labels: list[tuple[int, ...]] = [()] * len(image_ids)
        groups = np.zeros(len(image_ids), dtype=np.int64)
        has_group = False
        errors = []
        for image_id, env, rep, lab, grp, classes, scores, error in rows:
            i, j = img_index[image_id], col_index[(env, int(rep))]
            labels[i] = tuple(int(x) for x in lab.split(";") if x)
            if grp is not None:
                groups[i] = grp
                has_group = True
            if error is not None or classes is None:
                errors.append((image_id, env, int(rep), error or "no prediction"))
                continue
            c = json.loads(classes)
            ranked[i, j, : len(c)] = c
            top[i, j, : len(c)] = json.loads(scores)
        return ScoredSet(model, image_ids, columns, ranked, top, labels, groups if has_group else None, errors)

__all__ = [
    "ResultRow",
    "ResultStore",
    "SCHEMA",
    "ScoredSet",
]
