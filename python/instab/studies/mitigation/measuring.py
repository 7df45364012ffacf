"""What every row of the study reports: accuracy per device, mean accuracy and instability of ranked predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from instab.metrics.instability import instability


def top_k_classes(probs: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest-scoring classes of each row of ``probs`` [n, classes], best first (ties: lower index)."""
    idx = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(probs, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def measure(ranked: np.ndarray, labels: Sequence[Sequence[int]], k: int = 1) -> dict[str, Any]:
    """Accuracy per environment, mean accuracy and instability of ranked predictions [n, envs, m] (-1 = missing)."""
    res = instability(ranked, [list(x) for x in labels], k=k)
    acc = [float(a) for a in res.accuracy]
    return {"accuracy": float(np.nanmean(acc)), "accuracy_per_device": acc, "instability": float(res.rate),
            "n_unstable": int(res.n_unstable), "n_images": int(res.n_images)}


__all__ = ["measure", "top_k_classes"]
