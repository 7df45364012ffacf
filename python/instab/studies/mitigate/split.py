"""Training, validation and evaluation rows of one labelled folder: a seeded permutation per class.

Every class (an image's first label) is split on its own, so each part holds every
class in the same proportions; the permutation of class ``c`` is keyed by
``(seed, c)``, so adding images of one class never moves another's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Sorted row numbers of the three parts (disjoint; together every row)."""

    train: np.ndarray
    val: np.ndarray
    eval: np.ndarray

    def sizes(self) -> dict[str, int]:
        """Images per part."""
        return {"train": len(self.train), "val": len(self.val), "eval": len(self.eval)}


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name}: expected a fraction in [0, 1), got {value!r}")
    return float(value)


def split_per_class(first_labels: Sequence[int] | np.ndarray, val_fraction: float, eval_fraction: float,
                    seed: int) -> Split:
    """Split rows by class: ``round(n * eval_fraction)`` evaluation and ``round(n * val_fraction)`` validation
    rows of each class's ``n`` (at least one image of every class trains), the rest training rows.

    Raises ValueError when a part that was asked for ends up empty (too few images).
    """
    val_fraction = _check_fraction("val_fraction", val_fraction)
    eval_fraction = _check_fraction("eval_fraction", eval_fraction)
    if val_fraction + eval_fraction >= 1.0:
        raise ValueError(f"val_fraction + eval_fraction: must leave images to train on, got "
                         f"{val_fraction} + {eval_fraction}")
    labels = np.asarray(first_labels, dtype=np.int64).reshape(-1)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "eval": []}
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rows = rows[np.random.default_rng([int(seed) & 0xFFFFFFFF, int(c), 0x5B1]).permutation(len(rows))]
        n_eval = min(int(round(len(rows) * eval_fraction)), len(rows) - 1)
        n_val = min(int(round(len(rows) * val_fraction)), len(rows) - 1 - n_eval)
        parts["eval"].append(rows[:n_eval])
        parts["val"].append(rows[n_eval : n_eval + n_val])
        parts["train"].append(rows[n_eval + n_val :])
    split = Split(*(np.sort(np.concatenate(parts[k])) if parts[k] else np.zeros(0, np.int64)
                    for k in ("train", "val", "eval")))
    for name, fraction in (("eval", eval_fraction), ("val", val_fraction)):
        if fraction > 0 and not len(getattr(split, name)):
            raise ValueError(f"{name}_fraction: {len(labels)} image(s) in {len(np.unique(labels))} class(es) leave "
                             f"no {name} image; give more images per class")
    return split


__all__ = ["Split", "split_per_class"]
