"""What a report shows, computed once from one model's stored results: instability at top-1 and
top-3 (over all columns, and across devices when repeat shots exist), 95% Wilson intervals,
per class and per group, pairwise, repeat shots within vs across devices, confidence by
stability and correctness, and each image's outcome in each environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from instab.io.store import ScoredSet
from instab.metrics.instability import GroupStats, InstabilityResult, instability
from instab.metrics.uncertainty import McNemarResult, mcnemar, wilson_interval
from instab.workflow.report_gallery import ImageOutcomes, outcomes


def column_names(scored: ScoredSet) -> list[str]:
    """Column labels: the environment, or ``environment#repeat`` where it was scored several times."""
    repeats: dict[str, set[int]] = {env: set() for env, _ in scored.columns}
    for env, rep in scored.columns:
        repeats[env].add(rep)
    return [env if len(repeats[env]) == 1 else f"{env}#{rep}" for env, rep in scored.columns]


def first_shots(scored: ScoredSet) -> list[int]:
    """The column of each environment's first shot (its smallest repeat), in column order."""
    first: dict[str, tuple[int, int]] = {}
    for j, (env, rep) in enumerate(scored.columns):
        if env not in first or rep < first[env][0]:
            first[env] = (rep, j)
    return sorted(j for _, j in first.values())


def has_repeats(scored: ScoredSet) -> bool:
    """Whether some environment was scored in several repeat shots."""
    return len(first_shots(scored)) < len(scored.columns)


def analyse(scored: ScoredSet, columns: list[int] | None = None) -> dict[int, InstabilityResult]:
    """Instability at top-1 and (when stored) top-3, over all columns or over ``columns``."""
    ranked = scored.ranked if columns is None else scored.ranked[:, columns]
    top = scored.top_scores[..., 0] if columns is None else scored.top_scores[:, columns, 0]
    ks = [1] + ([3] if scored.ranked.shape[2] >= 3 else [])
    return {k: instability(ranked, scored.labels, k=k, top_scores=top) for k in ks}


def interval(k: Any, n: Any) -> tuple[Any, Any]:
    """95% Wilson interval of ``k / n`` (NaN where ``n`` is 0)."""
    return wilson_interval(np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64))


def rate_interval(r: InstabilityResult) -> tuple[float, float]:
    """95% interval of an instability rate."""
    lo, hi = interval(r.n_unstable, r.n_images)
    return float(lo), float(hi)


def accuracy_counts(r: InstabilityResult) -> tuple[np.ndarray, np.ndarray]:
    """(correct, observed) counts per column."""
    return (r.correct & r.observed).sum(axis=0), r.observed.sum(axis=0)


def versus_first(r: InstabilityResult) -> list[McNemarResult | None]:
    """McNemar's paired test of each column's correctness against the first column's, on the images seen in
    both (None for the first column itself and where no image was seen in both)."""
    out: list[McNemarResult | None] = [None]
    for j in range(1, r.correct.shape[1]):
        both = r.observed[:, 0] & r.observed[:, j]
        out.append(mcnemar(r.correct[both, 0], r.correct[both, j]) if both.any() else None)
    return out


@dataclass(frozen=True)
class Analysis:
    """What the tables and figures show, computed once from the stored results."""

    names: list[str]  # column names (environment, or environment#repeat)
    results: dict[int, InstabilityResult]  # by k, over all columns
    headline: dict[int, InstabilityResult]  # by k, across devices: each environment's first shot
    per_class: GroupStats  # keyed by each image's first label
    groups: GroupStats | None  # keyed by the group column, if any
    pairwise: np.ndarray
    repeats: dict[str, Any] | None  # within vs across devices, with counts
    images: ImageOutcomes


def analysis(scored: ScoredSet) -> Analysis:
    """The :class:`Analysis` of one model's stored results (thumbnails from ``scored.paths`` where known)."""
    results = analyse(scored)
    r1 = results[1]
    headline = analyse(scored, first_shots(scored)) if has_repeats(scored) else results
    first_label = np.array([lab[0] for lab in scored.labels], dtype=np.int64)
    groups = r1.by_group(scored.groups) if scored.groups is not None else None
    names = column_names(scored)
    n, e = len(scored.image_ids), len(scored.columns)
    paths = scored.paths.tolist() if scored.paths is not None else [[None] * e for _ in range(n)]
    images = outcomes(scored.image_ids, scored.labels, names, scored.ranked, scored.top_scores, r1, paths)
    return Analysis(names, results, headline, r1.by_group(first_label), groups, r1.pairwise(),
                    repeat_counts(scored), images)


def repeat_counts(scored: ScoredSet) -> dict[str, Any] | None:
    """Instability within each environment's repeat shots and across environments per shot, with counts.

    None without repeat shots. ``within_device`` / ``across_devices`` map a device
    (or a shot index) to ``(rate, n_unstable, n_images)``.
    """
    if not has_repeats(scored):
        return None
    envs = scored.environments
    reps = sorted({rep for _, rep in scored.columns})

    def counts(cols: list[int]) -> tuple[float, int, int]:
        r = analyse(scored, cols)[1]
        return (float(r.rate), r.n_unstable, r.n_images)

    within = {e: counts([j for j, (env, _) in enumerate(scored.columns) if env == e]) for e in envs
              if sum(env == e for env, _ in scored.columns) >= 2}
    across = {str(r): counts([j for j, (_, rep) in enumerate(scored.columns) if rep == r]) for r in reps
              if sum(rep == r for _, rep in scored.columns) >= 2}
    return {"within_device": within, "across_devices": across}


def confidence_groups(r: InstabilityResult) -> dict[str, np.ndarray]:
    """Top-1 confidences of stable/unstable images' correct/incorrect predictions (the study's Figure 4)."""
    mask = r.observed & r.counted[:, None]
    conf = r.confidence if r.confidence is not None else np.full(mask.shape, np.nan)
    unstable = r.unstable[:, None]
    out = {}
    for name, where in (("stable, correct", ~unstable & r.correct), ("stable, incorrect", ~unstable & ~r.correct),
                        ("unstable, correct", unstable & r.correct), ("unstable, incorrect", unstable & ~r.correct)):
        values = conf[mask & where]
        out[name] = values[np.isfinite(values)]
    return out


def per_class_order(pc: GroupStats) -> np.ndarray:
    """Classes by instability, highest first (more images first among equal rates)."""
    return np.lexsort((-pc.n_images, -np.nan_to_num(pc.rate, nan=-1)))


__all__ = [
    "Analysis",
    "accuracy_counts",
    "analyse",
    "analysis",
    "column_names",
    "confidence_groups",
    "first_shots",
    "has_repeats",
    "interval",
    "per_class_order",
    "rate_interval",
    "repeat_counts",
    "versus_first",
]
