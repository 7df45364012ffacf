"""The instability metric over data that does not fit in memory, one group of images at a time.

:func:`~instab.metrics.instability.instability` needs every image's predictions at once.
The headline numbers are sums over images, though, so they can be accumulated: feed
:class:`InstabilityCounter` the predictions of disjoint groups of images (every
observation of an image in the same group) and it keeps only counts, calling the same
C++ kernel on each group. The result equals the in-memory metric's counts, rate and
per-environment accuracy exactly. :func:`instab.io.streaming.streamed_instability`
groups the rows of a results store or dataset this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from instab._shared.validation import check_choice, check_threads
from instab.metrics.instability import INTERVAL_WHAT, instability
from instab.metrics.uncertainty import check_level, wilson_interval


@dataclass(frozen=True)
class StreamedInstability:
    """What :class:`InstabilityCounter` counted: the numbers of :class:`~instab.metrics.InstabilityResult`
    that are sums over images (no per-image arrays)."""

    k: int
    rate: float  # n_unstable / n_images (NaN when no image was counted)
    n_unstable: int
    n_images: int  # images counted: observed in at least two environments
    n_always_correct: int
    n_always_wrong: int
    n_seen: int  # images fed, counted or not
    env_correct: np.ndarray  # int64 [e] correct observations per environment column
    env_observed: np.ndarray  # int64 [e] observations per environment column
    groups: int  # groups fed

    @property
    def accuracy(self) -> np.ndarray:
        """float [e]: accuracy per environment column over its observed images (NaN where none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(self.env_correct / self.env_observed, dtype=np.float64)

    def interval(self, what: str = "rate", level: float = 0.95) -> tuple[float, float]:
        """The Wilson interval of ``what`` ("rate", "always_correct" or "always_wrong") over the counted images."""
        what = check_choice(what, INTERVAL_WHAT, "what")
        level = check_level(level)
        k = {"rate": self.n_unstable, "always_correct": self.n_always_correct, "always_wrong": self.n_always_wrong}
        lo, hi = wilson_interval(k[what], self.n_images, level)
        return float(lo), float(hi)

    def accuracy_intervals(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Wilson intervals of :attr:`accuracy`, per environment column: ``(lo, hi)``, NaN where none observed."""
        lo, hi = wilson_interval(self.env_correct, self.env_observed, check_level(level))
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


class InstabilityCounter:
    """Accumulates the instability metric over disjoint groups of images.

    Parameters
    ----------
    n_envs : int
        Environment columns of every group (a group's predictions are ``[images, n_envs, m]``).
    k : int
        A prediction is correct when any of its top k classes is a label.
    n_classes : int, optional
        Range check of classes and labels, as for :func:`~instab.metrics.instability`.
    threads : int, optional
        Threads of the kernel (None: all cores); the counts do not depend on it.
    """

    def __init__(self, n_envs: int, k: int = 1, *, n_classes: int | None = None, threads: int | None = None):
        if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            raise ValueError(f"n_envs: expected a positive int, got {n_envs!r}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        self.n_envs, self.k, self.n_classes, self.threads = int(n_envs), int(k), n_classes, check_threads(threads)
        self._counts = np.zeros(5, dtype=np.int64)  # unstable, counted, always correct, always wrong, seen
        self._env_correct = np.zeros(self.n_envs, dtype=np.int64)
        self._env_observed = np.zeros(self.n_envs, dtype=np.int64)
        self._groups = 0

    def add(self, predictions: Any, labels: Any) -> None:
        """Count one group: ranked ``predictions`` int ``[images, n_envs, m]`` (-1: not observed) and the images'
        label sets (as :func:`~instab.metrics.instability` takes them). No image may be in two groups."""
        pred = np.asarray(predictions)
        if pred.ndim != 3 or pred.shape[1] != self.n_envs:
            raise ValueError(f"predictions: expected shape [images, {self.n_envs}, m], got {pred.shape}")
        if pred.shape[0] == 0:
            return
        r = instability(pred, labels, k=self.k, n_classes=self.n_classes, threads=self.threads)
        self._counts += (r.n_unstable, r.n_images, r.n_always_correct, r.n_always_wrong, pred.shape[0])
        self._env_correct += r.correct.sum(axis=0)
        self._env_observed += r.observed.sum(axis=0)
        self._groups += 1

    def result(self) -> StreamedInstability:
        """The counts so far."""
        unstable, counted, right, wrong, seen = (int(c) for c in self._counts)
        return StreamedInstability(
            k=int(self.k), rate=unstable / counted if counted else float("nan"), n_unstable=unstable,
            n_images=counted, n_always_correct=right, n_always_wrong=wrong, n_seen=seen,
            env_correct=self._env_correct.copy(), env_observed=self._env_observed.copy(), groups=self._groups)


__all__ = ["InstabilityCounter", "StreamedInstability"]
