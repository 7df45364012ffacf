"""The study's two image sets: disjoint training and evaluation images, and a seeded split of one labels CSV."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from instab.models import ModelSpec
from instab.train.dataset import LabeledSet, load_labeled


class OverlapError(ValueError):
    """The training and evaluation images overlap."""


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def check_disjoint(train: Sequence[Path], evaluation: Sequence[Path]) -> None:
    """Raise :class:`OverlapError` when a training image is also an evaluation image (same file or same bytes)."""
    same = sorted({p.resolve() for p in train} & {p.resolve() for p in evaluation})
    if same:
        raise OverlapError(
            f"training and evaluation images overlap: {len(same)} file(s), e.g. {same[0]}; use disjoint sets"
        )
    digests = {_digest(p): p for p in train}
    dup = [(digests[d], p) for p in evaluation if (d := _digest(p)) in digests]
    if dup:
        raise OverlapError(
            f"training and evaluation images overlap: {len(dup)} evaluation image(s) have the same bytes as a "
            f"training image, e.g. {dup[0][1].name} = {dup[0][0].name}"
        )


def load_image_sets(images: str | Path, labels: str | Path, eval_images: str | Path, eval_labels: str | Path,
                    spec: ModelSpec, limit: int | None = None,
                    eval_limit: int | None = None) -> tuple[LabeledSet, LabeledSet]:
    """The training and evaluation sets at the model's size and crop; :class:`OverlapError` if they share an image."""
    train = load_labeled(images, labels, spec.size, spec.crop, limit)
    evals = load_labeled(eval_images, eval_labels, spec.size, spec.crop, eval_limit)
    check_disjoint(train.paths, evals.paths)
    return train, evals


def split_labels(labels_csv: str | Path, out_dir: str | Path, n_train: int, n_eval: int, seed: int = 0,
                 images_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``train.csv`` and ``eval.csv``: disjoint rows of ``labels_csv`` picked by a seeded permutation.

    The ``file`` column is rewritten as an absolute path, so both CSVs work with
    any ``--images`` folder argument (pass the original folder).

    Parameters
    ----------
    labels_csv : str or Path
        The labels CSV to split (``file`` column relative to ``images_dir``).
    out_dir : str or Path
        Folder for the two CSVs (created).
    n_train, n_eval : int
        Rows in each; together at most the rows of ``labels_csv``.
    seed : int
        Seeds the permutation.
    images_dir : str or Path, optional
        The images' folder (default: the folder of ``labels_csv``).

    Returns
    -------
    (Path, Path)
        ``train.csv`` and ``eval.csv``.
    """
    labels_csv = Path(labels_csv)
    base = Path(images_dir) if images_dir is not None else labels_csv.parent
    with labels_csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    if n_train < 1 or n_eval < 1 or n_train + n_eval > len(rows):
        raise ValueError(f"n_train + n_eval: need 1..{len(rows)} rows in all, got {n_train} + {n_eval}")
    order = np.random.default_rng([int(seed), 0x5E7]).permutation(len(rows))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, idx in (("train.csv", order[:n_train]), ("eval.csv", order[n_train : n_train + n_eval])):
        path = out_dir / name
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for i in sorted(idx):
                row = dict(rows[i])
                row["file"] = str((base / row["file"]).resolve())
                w.writerow(row)
        paths.append(path)
    return paths[0], paths[1]


__all__ = ["OverlapError", "check_disjoint", "load_image_sets", "split_labels"]
