"""What a results store holds, as Python objects: one row (:class:`ResultRow`), one model's rows as
arrays (:class:`ScoredSet`). :mod:`instab.io.store` reads and writes them (and re-exports both)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instab.io import table


@dataclass(frozen=True)
class ResultRow:
    """One scored (or failed) item: ``classes``/``scores`` are None and ``error`` says why when it failed.

    ``model_hash`` identifies the model (:func:`instab.io.store.model_hash`); rows written
    without one (hand-made stores, tests) are identified by ``model``.
    ``k`` is the number of classes asked for.
    """

    model: str
    image_id: str
    environment: str
    repeat: int
    path: str | None
    labels: tuple[int, ...]
    group: int | None
    classes: Sequence[int] | None
    scores: Sequence[float] | None
    error: str | None
    model_hash: str = ""
    k: int | None = None

    @property
    def identity(self) -> str:
        """The model key this row is stored under."""
        return self.model_hash or self.model


def stored_scores(scores: Iterable[float]) -> list[float]:
    """Scores as every results store keeps them: rounded to 7 decimals (SQLite and Parquet hold the same values)."""
    return [round(float(s), 7) for s in scores]


def resolve_identity(ids: Sequence[tuple[str, str]], model: str | None, where: str) -> tuple[str, str]:
    """(model_hash, name) among the stored ``ids`` named by ``model``: a hash, a unique prefix of one (6+
    characters) or a name; the only model when ``model`` is None. ``where`` names the store in messages."""
    if not ids:
        raise ValueError(f"results store: {where} holds no results")
    shown = ", ".join(m if h == m else f"{m} {h[:12]}" for h, m in ids)
    if model is None:
        if len(ids) > 1:
            raise ValueError(f"model: the store holds several models ({shown}); name one")
        return ids[0]
    for candidates in ([i for i in ids if i[0] == model], [i for i in ids if i[1] == model],
                       [i for i in ids if len(model) >= 6 and i[0].startswith(model)]):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            hashes = ", ".join(h[:12] for h, _ in candidates)
            raise ValueError(f"model: {model!r} names {len(candidates)} different models in the store "
                             f"({hashes}); give its hash (or a unique prefix of it)")
    raise ValueError(f"model: {model!r} not in the store (has {shown})")


@dataclass(frozen=True)
class ScoredSet:
    """Stored results as arrays for :func:`instab.instability`.

    Columns are the distinct (environment, repeat) pairs; ``ranked`` is
    int [n_images, n_columns, k] with -1 where an image was not scored there
    (missing or failed), ``top_scores`` the matching scores (NaN there).
    ``paths`` (object) and ``ks`` (int, -1 where unknown), [n_images, n_columns],
    hold each stored item's image file and k when read from a store, and
    ``grouped`` (bool [n_images]) which images have a group (``groups`` reads 0 for the others).
    """

    model: str
    image_ids: list[str]
    columns: list[tuple[str, int]]
    ranked: np.ndarray
    top_scores: np.ndarray
    labels: list[tuple[int, ...]]
    groups: np.ndarray | None
    errors: list[tuple[str, str, int, str]]  # (image_id, environment, repeat, error)
    model_hash: str = ""
    paths: np.ndarray | None = None
    ks: np.ndarray | None = None
    grouped: np.ndarray | None = None

    @property
    def environments(self) -> list[str]:
        return list(dict.fromkeys(env for env, _ in self.columns))

    def rows(self) -> Iterator[ResultRow]:
        """The stored items again, image by image and column by column (scored and failed ones)."""
        failed = {(i, e, int(r)): m for i, e, r, m in self.errors}
        for i, image_id in enumerate(self.image_ids):
            group = None
            if self.groups is not None and (self.grouped is None or self.grouped[i]):
                group = int(self.groups[i])
            for j, (env, rep) in enumerate(self.columns):
                error = failed.get((image_id, env, rep))
                n = int((self.ranked[i, j] >= 0).sum())
                if error is None and n == 0:
                    continue  # not stored
                classes = None if error else self.ranked[i, j, :n].tolist()
                scores = None if error else self.top_scores[i, j, :n].tolist()
                path = None if self.paths is None else self.paths[i, j]
                k = None if self.ks is None or self.ks[i, j] < 0 else int(self.ks[i, j])
                yield ResultRow(self.model, image_id, env, rep, path, self.labels[i], group, classes, scores,
                                error, self.model_hash, k)

    def to_dataframe(self) -> Any:
        """One row per stored item as a ``pandas.DataFrame``, with the columns and dtypes of ``instab export``
        (see :data:`instab.io.table.COLUMNS`), image by image. Needs pandas and pyarrow (``instab[export]``)."""
        return table.to_dataframe(self.rows())


__all__ = ["ResultRow", "ScoredSet", "resolve_identity", "stored_scores"]
