"""Label sets: one or more correct classes per image, as a padded int32 array."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PAD = -1
MAX_LABEL = 2**31 - 1  # label sets are int32


def normalize_label_sets(labels: Any, n_images: int, n_classes: int | None = None) -> np.ndarray:
    """Return label sets as int32 [n_images, L], padded with -1.

    ``labels`` may be int [n] (one label each), int [n, L] padded with -1, or a
    sequence of iterables of class indices (or of single ints).
    """
    if isinstance(labels, np.ndarray) and labels.dtype != object:
        arr = labels
        if arr.dtype.kind not in "iu":
            raise TypeError(f"labels: expected integer class indices, got dtype {arr.dtype}")
        if arr.ndim == 1:
            arr = arr[:, None]
        elif arr.ndim != 2:
            raise ValueError(f"labels: expected a 1-D or 2-D array, got shape {arr.shape}")
    elif isinstance(labels, Sequence) or isinstance(labels, np.ndarray):
        rows = [_as_row(item, i) for i, item in enumerate(labels)]
        width = max((len(r) for r in rows), default=1)
        arr = np.full((len(rows), max(width, 1)), PAD, dtype=np.int64)
        for i, row in enumerate(rows):
            arr[i, : len(row)] = row
    else:
        raise TypeError(f"labels: expected an int array or a list of label sets, got {type(labels).__name__}")

    if arr.shape[0] != n_images:
        raise ValueError(f"labels: has {arr.shape[0]} entries but predictions has {n_images} images")
    if arr.size and arr.min() < PAD:
        bad = np.argwhere(arr < PAD)[0]
        raise ValueError(f"labels: negative class index {arr[tuple(bad)]} for image {bad[0]}")
    # Checked before the int32 conversion, which would wrap (2**32 + 7 -> 7, 2**64 - 1 -> -1).
    upper = MAX_LABEL if n_classes is None else min(n_classes - 1, MAX_LABEL)
    if arr.size and arr.max() > upper:
        bad = np.argwhere(arr > upper)[0]
        raise ValueError(f"labels: class index {arr[tuple(bad)]} for image {bad[0]} is out of range (0..{upper})")
    empty = ~(arr >= 0).any(axis=1)
    if empty.any():
        raise ValueError(f"labels: image {int(np.argmax(empty))} has an empty label set")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _as_row(item: Any, index: int) -> list[int]:
    if isinstance(item, (int, np.integer)):
        return [_in_int32(int(item), index)]
    if isinstance(item, Iterable) and not isinstance(item, (str, bytes)):
        row = []
        for v in item:
            if not isinstance(v, (int, np.integer)):
                raise TypeError(f"labels: image {index} holds {v!r}; class indices must be integers")
            row.append(_in_int32(int(v), index))
        return row
    raise TypeError(f"labels: image {index} holds {item!r}; expected an int or an iterable of ints")


def _in_int32(v: int, index: int) -> int:
    # Python ints of any size: out-of-range ones must not reach the int64 staging array.
    if v < PAD:
        raise ValueError(f"labels: negative class index {v} for image {index}")
    if v > MAX_LABEL:
        raise ValueError(f"labels: class index {v} for image {index} is out of range (0..{MAX_LABEL})")
    return v

__all__ = [
    "MAX_LABEL",
    "PAD",
    "normalize_label_sets",
]
