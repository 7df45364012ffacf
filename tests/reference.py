"""Plain-numpy reference versions of every C++ kernel, written from the definitions.

They favour clarity over speed; the tests compare the compiled core against them.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------
# instability


def ranked_from_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k class indices of each row, best first; ties to the lower index (stable sort)."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[..., :k]


def instability_reference(predictions: np.ndarray, label_sets: list[set[int]], k: int) -> dict:
    """The instability metric straight from its definition.

    predictions: int [n, e, m] ranked (-1 first entry = unobserved) or float [n, e, c]
    scores (all-NaN row = unobserved).
    """
    n, e = predictions.shape[:2]
    correct = np.zeros((n, e), dtype=bool)
    observed = np.zeros((n, e), dtype=bool)
    for i in range(n):
        for j in range(e):
            row = predictions[i, j]
            if predictions.dtype.kind == "f":
                if np.isnan(row).all():
                    continue
                # NaN ranks last, as in the kernel (a row is never partly NaN here).
                top = ranked_from_scores(row, k)
            else:
                if row[0] == -1:
                    continue
                top = row[:k]
            observed[i, j] = True
            correct[i, j] = any(int(c) in label_sets[i] for c in top)
    n_obs = observed.sum(axis=1)
    n_ok = (correct & observed).sum(axis=1)
    counted = n_obs >= 2
    unstable = counted & (n_ok > 0) & (n_ok < n_obs)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (correct & observed).sum(axis=0) / observed.sum(axis=0)
    return {
        "correct": correct,
        "observed": observed,
        "counted": counted,
        "unstable": unstable,
        "n_images": int(counted.sum()),
        "n_unstable": int(unstable.sum()),
        "n_always_correct": int((counted & (n_ok == n_obs)).sum()),
        "n_always_wrong": int((counted & (n_ok == 0)).sum()),
        "accuracy": accuracy,
    }


def pairwise_reference(correct: np.ndarray, observed: np.ndarray) -> np.ndarray:
    e = correct.shape[1]
    out = np.full((e, e), np.nan)
    for a in range(e):
        for b in range(e):
            both = observed[:, a] & observed[:, b]
            if both.any():
                out[a, b] = np.mean(correct[both, a] != correct[both, b])
    return out


def topk_reference(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable descending order with NaN last."""
    key = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-key, axis=-1, kind="stable")
    # -inf scores tie with NaN under this key: put real -inf before NaN.
    nan_last = np.argsort(np.isnan(np.take_along_axis(scores, order, -1)), axis=-1, kind="stable")
    order = np.take_along_axis(order, nan_last, -1)[..., :k]
    return order, np.take_along_axis(scores, order, -1)
