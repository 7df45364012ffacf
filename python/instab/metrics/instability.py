"""The instability metric and the analyses built on it.

An image is *unstable* when, over the environments in which it was observed,
the model's prediction is correct in at least one and wrong in at least one.
A prediction is correct when the top-k list meets the image's label set.
Images wrong everywhere are stable. An environment in which an image was not
observed is left out of that image's comparison, and an image observed in
fewer than two environments is not counted at all (it cannot be compared).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from instab._native import core
from instab._shared.validation import check_choice, check_seed, check_threads
from instab.metrics.labels import normalize_label_sets
from instab.metrics.uncertainty import (
    McNemarResult,
    bootstrap_interval,
    check_level,
    check_n_boot,
    mcnemar,
    wilson_interval,
)

# Proportions over the counted images that :meth:`InstabilityResult.interval` bounds.
INTERVAL_WHAT = ("rate", "always_correct", "always_wrong")
INTERVAL_METHODS = ("wilson", "bootstrap")
# Ranked class indices the core reads as they are. int16 halves the bytes of
# int32 for models with < 32768 classes (exact: the same values); see
# docs/performance.md.
NATIVE_INDEX_DTYPES = (np.int16, np.int32, np.int64)


@dataclass(frozen=True)
class GroupStats:
    """Instability and accuracy per group key (class, angle, device, ...)."""

    keys: np.ndarray  # [G] sorted unique group keys
    n_images: np.ndarray  # [G] images counted (observed in >= 2 environments)
    n_unstable: np.ndarray  # [G]
    rate: np.ndarray  # [G] n_unstable / n_images (NaN for a group with none counted)
    accuracy: np.ndarray  # [G, n_envs] accuracy over the group's observed images


@dataclass(frozen=True)
class RepeatAnalysis:
    """Instability between repeat shots on one device vs across devices."""

    within: dict[int, float]  # device -> instability over its repeat shots
    across: dict[int, float]  # repeat index -> instability across devices
    within_mean: float
    across_mean: float


@dataclass(frozen=True)
class ConfidenceSplit:
    """Top-1 scores of every observation of stable and of unstable images."""

    stable: np.ndarray
    unstable: np.ndarray


@dataclass(frozen=True)
class InstabilityResult:
    """What :func:`instability` found. Arrays are indexed [image] or [image, environment]."""

    k: int
    rate: float  # n_unstable / n_images (NaN when no image was counted)
    n_unstable: int
    n_images: int  # images counted: observed in at least two environments
    n_always_correct: int
    n_always_wrong: int
    unstable: np.ndarray  # bool [n]
    counted: np.ndarray  # bool [n]
    correct: np.ndarray  # bool [n, e]
    observed: np.ndarray  # bool [n, e]
    accuracy: np.ndarray  # float [e] over the images observed in each environment
    confidence: np.ndarray | None = field(default=None, repr=False)  # float [n, e] top-1 score

    def by_group(self, groups: Any) -> GroupStats:
        """Rate and per-environment accuracy for each value of ``groups`` (int [n])."""
        g = np.asarray(groups)
        if g.ndim != 1 or g.shape[0] != self.unstable.shape[0]:
            raise ValueError(f"groups: expected shape ({self.unstable.shape[0]},), got {g.shape}")
        if g.dtype.kind not in "iu":
            raise TypeError(f"groups: expected integer keys, got dtype {g.dtype}")
        keys, inverse = np.unique(g, return_inverse=True)
        n_groups = len(keys)
        n_images = np.bincount(inverse, weights=self.counted, minlength=n_groups).astype(np.int64)
        n_unstable = np.bincount(inverse, weights=self.unstable, minlength=n_groups).astype(np.int64)
        n_envs = self.correct.shape[1]
        correct = np.zeros((n_groups, n_envs))
        observed = np.zeros((n_groups, n_envs))
        np.add.at(correct, inverse, self.correct & self.observed)
        np.add.at(observed, inverse, self.observed)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = n_unstable / n_images
            accuracy = correct / observed
        return GroupStats(keys, n_images, n_unstable, rate, accuracy)

    def pairwise(self) -> np.ndarray:
        """[e, e] instability between each pair of environments.

        Entry (a, b) is the fraction of images observed in both a and b that are
        correct in exactly one of them; NaN where no image was observed in both.
        """
        obs = self.observed.astype(np.float64)
        hit: npt.NDArray[np.float64] = (self.correct & self.observed).astype(np.float64)
        miss = obs - hit
        both = obs.T @ obs
        differ = hit.T @ miss + miss.T @ hit
        with np.errstate(invalid="ignore", divide="ignore"):
            return differ / both

    def repeat_analysis(self, device: Any, repeat: Any) -> RepeatAnalysis:
        """Instability within a device's repeat shots vs across devices.

        ``device`` and ``repeat`` (int [n_envs]) say which device and which shot
        each environment column is. Within: for each device with two or more
        shots, the instability over its shots. Across: for each repeat index
        present on two or more devices, the instability over those columns.
        """
        n_envs = self.correct.shape[1]
        dev = _env_keys(device, "device", n_envs)
        rep = _env_keys(repeat, "repeat", n_envs)
        if len(set(zip(dev.tolist(), rep.tolist(), strict=True))) != n_envs:
            raise ValueError("device, repeat: each environment column must be a distinct (device, repeat) pair")
        within = {int(d): self._subset_rate(dev == d) for d in np.unique(dev) if (dev == d).sum() >= 2}
        across = {int(r): self._subset_rate(rep == r) for r in np.unique(rep) if (rep == r).sum() >= 2}
        return RepeatAnalysis(
            within=within,
            across=across,
            within_mean=float(np.nanmean(list(within.values()))) if within else float("nan"),
            across_mean=float(np.nanmean(list(across.values()))) if across else float("nan"),
        )

    def confidence_split(self) -> ConfidenceSplit:
        """Top-1 scores of stable and unstable images (counted images, observed entries)."""
        if self.confidence is None:
            raise ValueError(
                "confidence: not available; pass float scores, or top_scores= with ranked predictions"
            )
        mask = self.observed & self.counted[:, None]
        unstable = mask & self.unstable[:, None]
        stable = mask & ~self.unstable[:, None]
        return ConfidenceSplit(stable=self.confidence[stable], unstable=self.confidence[unstable])

    def interval(
        self, what: str = "rate", level: float = 0.95, method: str = "wilson", *, n_boot: int = 1000, seed: int = 0
    ) -> tuple[float, float]:
        """A confidence interval of a proportion over the counted images.

        Parameters
        ----------
        what : {"rate", "always_correct", "always_wrong"}, default "rate"
            The instability rate, or the share of counted images correct in
            every environment, or wrong in every one.
        level : float, default 0.95
            Confidence level, in (0, 1).
        method : {"wilson", "bootstrap"}, default "wilson"
            The Wilson score interval (closed form), or the percentile
            bootstrap over images with ``n_boot`` resamples seeded by ``seed``
            (see :func:`~instab.metrics.uncertainty.bootstrap_interval`).
        n_boot : int, default 1000
            Bootstrap resamples (a positive int; checked, used by the bootstrap).
        seed : int, default 0
            Seed of the bootstrap; the same seed gives the same interval.

        Returns
        -------
        (lo, hi) : tuple of float
            ``(nan, nan)`` when no image was counted.
        """
        what = check_choice(what, INTERVAL_WHAT, "what")
        method = check_choice(method, INTERVAL_METHODS, "method")
        level = check_level(level)
        n_boot, seed = check_n_boot(n_boot), check_seed(seed)
        k = {"rate": self.n_unstable, "always_correct": self.n_always_correct, "always_wrong": self.n_always_wrong}
        if method == "wilson":
            return wilson_interval(k[what], self.n_images, level)
        # Only the count matters to a 0/1 bootstrap: k true flags among the counted images.
        flags = np.arange(self.n_images) < k[what]
        return bootstrap_interval(flags, level, n_boot, seed)

    def accuracy_intervals(
        self, level: float = 0.95, method: str = "wilson", *, n_boot: int = 1000, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Confidence intervals of :attr:`accuracy`, per environment.

        Each environment's accuracy is over the images observed in it; the
        interval is Wilson's, or the percentile bootstrap over those images
        (``method="bootstrap"``, ``n_boot`` resamples seeded by ``seed``; each
        environment from the same seed). Returns ``(lo, hi)``, float
        ``[n_envs]`` each, NaN for an environment with no observation.
        """
        method = check_choice(method, INTERVAL_METHODS, "method")
        level = check_level(level)
        n_boot, seed = check_n_boot(n_boot), check_seed(seed)
        n_ok = self.correct.sum(axis=0)  # correct implies observed
        n_obs = self.observed.sum(axis=0)
        if method == "wilson":
            return wilson_interval(n_ok, n_obs, level)
        ends = [bootstrap_interval(np.arange(n) < k, level, n_boot, seed) for k, n in zip(n_ok, n_obs, strict=True)]
        lo, hi = np.array(ends, dtype=np.float64).reshape(-1, 2).T
        return lo, hi

    def compare(self, other: InstabilityResult) -> McNemarResult:
        """McNemar's paired test of this result's unstable flags against ``other``'s, on the same images.

        Both results must be over the same images in the same order (two
        models, or two sets of environments). Images counted in both are
        paired; ``b`` counts those unstable here only, ``c`` those unstable in
        ``other`` only.
        """
        if not isinstance(other, InstabilityResult):
            raise TypeError(f"other: expected an InstabilityResult, got {type(other).__name__}")
        if other.unstable.shape != self.unstable.shape:
            n, m = self.unstable.shape[0], other.unstable.shape[0]
            raise ValueError(f"other: expected a result over the same {n} images, got {m}")
        both = self.counted & other.counted
        return mcnemar(self.unstable[both], other.unstable[both])

    def to_dataframe(self) -> Any:
        """One row per image x environment, as a ``pandas.DataFrame``.

        Columns: ``image``, ``environment`` (int64 indices), ``observed``,
        ``correct`` (bool), ``confidence`` (float, NaN where not observed or
        not available), ``unstable``, ``counted`` (bool, the image's flags,
        repeated over its environments). Rows are image-major. Needs pandas.
        """
        try:
            import pandas as pd  # optional dependency (instab[export]): only this method needs it
        except ImportError as err:
            raise ImportError(
                "InstabilityResult.to_dataframe needs pandas: pip install 'instab[export]' (or pip install pandas)"
            ) from err
        n, n_envs = self.correct.shape
        confidence = self.confidence if self.confidence is not None else np.full((n, n_envs), np.nan, np.float32)
        return pd.DataFrame(
            {
                "image": np.repeat(np.arange(n, dtype=np.int64), n_envs),
                "environment": np.tile(np.arange(n_envs, dtype=np.int64), n),
                "observed": self.observed.reshape(-1),
                "correct": self.correct.reshape(-1),
                "confidence": np.where(self.observed, confidence, np.nan).reshape(-1),
                "unstable": np.repeat(self.unstable, n_envs),
                "counted": np.repeat(self.counted, n_envs),
            }
        )

    def _subset_rate(self, columns: np.ndarray) -> float:
        obs = self.observed[:, columns]
        hit = (self.correct[:, columns] & obs).sum(axis=1)
        n_obs = obs.sum(axis=1)
        counted = n_obs >= 2
        if not counted.any():
            return float("nan")
        unstable = counted & (hit > 0) & (hit < n_obs)
        return float(unstable.sum() / counted.sum())


def instability(
    predictions: Any,
    labels: Any,
    *,
    k: int = 1,
    n_classes: int | None = None,
    top_scores: Any = None,
    threads: int | None = None,
) -> InstabilityResult:
    """Measure instability of predictions across environments.

    An image is unstable when its prediction is correct in at least one of the
    environments it was observed in and wrong in at least one other. Images
    observed in fewer than two environments are not counted.

    Parameters
    ----------
    predictions : array_like
        Either ranked class indices, int ``[n_images, n_envs, m]`` best first
        with -1 for "not observed" (``m >= k``; int16 is read as it is and
        is the fastest for models with fewer than 32768 classes), or float scores
        ``[n_images, n_envs, n_classes]`` with an all-NaN row for "not
        observed" (the top k is then selected in C++, without sorting).
    labels : array_like or sequence of iterables of int
        The set of correct classes of each image: int ``[n_images]``, int
        ``[n_images, L]`` padded with -1, or a list of iterables of class
        indices.
    k : int, default 1
        A prediction is correct when any of its top k classes is a label.
    n_classes : int, optional
        The number of classes, to range-check ranked predictions and labels
        (taken from the scores' last axis for float input).
    top_scores : array_like, optional
        Float scores aligned with ranked predictions, ``[n, e, m]`` or
        ``[n, e]``, for :meth:`InstabilityResult.confidence_split`.
    threads : int, optional
        Worker threads: None (default) for all cores, else an int in
        ``1..MAX_THREADS``. Results do not depend on it.

    Returns
    -------
    InstabilityResult
        The rate and counts, per-image flags (``unstable``, ``counted``),
        per-observation flags (``correct``, ``observed``), accuracy per
        environment, and methods for the analyses built on them
        (:meth:`~InstabilityResult.by_group`, :meth:`~InstabilityResult.pairwise`,
        :meth:`~InstabilityResult.repeat_analysis`,
        :meth:`~InstabilityResult.confidence_split`), confidence intervals
        (:meth:`~InstabilityResult.interval`,
        :meth:`~InstabilityResult.accuracy_intervals`), a paired test against
        another result (:meth:`~InstabilityResult.compare`) and
        :meth:`~InstabilityResult.to_dataframe`.

    Raises
    ------
    TypeError
        If ``k`` is not an int, ``n_classes`` is neither None nor an int,
        ``predictions`` is neither integer nor float, ``labels`` holds
        something other than class indices, or ``threads`` is neither None
        nor an int.
    ValueError
        If ``predictions`` is not a non-empty 3-D array, ``k`` is outside
        ``1..m``, ``n_classes`` is not positive, ``labels`` does not have one
        non-empty set per image or holds an index out of range, ``top_scores``
        is given with float scores or has the wrong shape, or ``threads`` is
        outside ``1..MAX_THREADS``.

    Examples
    --------
    Top-1 predictions of 4 images in 3 environments (-1: not seen there);
    image 2 is right as class 3 or 4:

    >>> import numpy as np
    >>> import instab
    >>> predictions = np.array([[[7], [7], [7]], [[2], [5], [2]], [[4], [3], [9]], [[0], [-1], [0]]])
    >>> r = instab.instability(predictions, [7, 2, [3, 4], 1], k=1)
    >>> r.rate, r.n_unstable, r.n_images
    (0.5, 2, 4)
    >>> r.unstable.tolist()
    [False, True, True, False]
    >>> r.accuracy.round(3).tolist()
    [0.75, 0.667, 0.5]
    >>> r.pairwise().round(2).tolist()
    [[0.0, 0.33, 0.25], [0.33, 0.0, 0.67], [0.25, 0.67, 0.0]]

    Float scores ``[images, environments, classes]`` work too, and carry the
    top-1 confidence:

    >>> scores = np.array([[[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]],
    ...                    [[0.2, 0.2, 0.6], [0.1, 0.1, 0.8]]], dtype=np.float32)
    >>> r = instab.instability(scores, [1, 2])
    >>> r.unstable.tolist()
    [True, False]
    >>> print(r.confidence_split().unstable)
    [0.7 0.6]
    """
    pred, is_scores, n_classes = _as_predictions(predictions, k, n_classes)
    label_sets = normalize_label_sets(labels, pred.shape[0], n_classes)
    nthreads = check_threads(threads)

    raw = core.instability(np.ascontiguousarray(pred), label_sets, int(k), int(n_classes or -1), nthreads)

    confidence = raw["confidence"]
    if top_scores is not None:
        if is_scores:
            raise ValueError("top_scores: only used with ranked predictions; float scores carry their own")
        confidence = _top1(top_scores, pred.shape[:2])
    observed = raw["observed"].view(bool)
    env_observed = raw["env_observed"]
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = raw["env_correct"] / env_observed
    n_images = int(raw["n_counted"])
    return InstabilityResult(
        k=int(k),
        rate=raw["n_unstable"] / n_images if n_images else float("nan"),
        n_unstable=int(raw["n_unstable"]),
        n_images=n_images,
        n_always_correct=int(raw["n_always_correct"]),
        n_always_wrong=int(raw["n_always_wrong"]),
        unstable=raw["unstable"].view(bool),
        counted=raw["counted"].view(bool),
        correct=raw["correct"].view(bool),
        observed=observed,
        accuracy=accuracy,
        confidence=confidence,
    )


def _as_predictions(predictions: Any, k: int, n_classes: int | None) -> tuple[np.ndarray, bool, int | None]:
    """Checked predictions for the core (int32/int64 ranks or float32/float64 scores), whether they are scores,
    and the class count (the scores' last axis for scores)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k: expected an int, got {type(k).__name__}")
    if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer))):
        raise TypeError(f"n_classes: expected an int or None, got {n_classes!r}")
    pred = np.asarray(predictions)
    if pred.ndim != 3:
        raise ValueError(f"predictions: expected a 3-D array [images, environments, m], got shape {pred.shape}")
    if pred.dtype.kind not in "iuf":
        raise TypeError(f"predictions: expected integer class indices or float scores, got dtype {pred.dtype}")
    if 0 in pred.shape:
        raise ValueError(f"predictions: empty array of shape {pred.shape}")
    is_scores = pred.dtype.kind == "f"
    if is_scores:
        if pred.dtype not in (np.float32, np.float64):
            pred = pred.astype(np.float32)
        n_classes = pred.shape[2]
    elif pred.dtype not in NATIVE_INDEX_DTYPES:
        pred = _as_native_indices(pred, n_classes)
    if n_classes is not None and n_classes < 1:
        raise ValueError(f"n_classes: must be positive, got {n_classes}")
    if not 1 <= k <= pred.shape[2]:
        raise ValueError(f"k: must be in 1..{pred.shape[2]} (the predictions' last axis), got {k}")
    return pred, is_scores, n_classes


def _as_native_indices(pred: np.ndarray, n_classes: int | None) -> np.ndarray:
    """The narrowest native signed type holding every value of ``pred`` exactly (-1 included)."""
    for dtype in NATIVE_INDEX_DTYPES:
        if np.can_cast(pred.dtype, dtype, casting="safe"):
            return pred.astype(dtype)
    _check_fits_int64(pred, n_classes)
    return pred.astype(np.int64)


def _check_fits_int64(pred: np.ndarray, n_classes: int | None) -> None:
    # uint64 indices above 2**63 - 1 would wrap to negatives, -1 reading as "not observed".
    if pred.dtype != np.uint64 or pred.max() <= np.iinfo(np.int64).max:
        return
    i, j, t = np.argwhere(pred > np.iinfo(np.int64).max)[0]
    upper = n_classes - 1 if n_classes is not None else np.iinfo(np.int64).max - 1
    raise ValueError(
        f"predictions: class index {pred[i, j, t]} at [{i}, {j}] is out of range (expected -1 or 0..{upper})"
    )


def _top1(top_scores: Any, shape: tuple[int, int]) -> np.ndarray:
    s = np.asarray(top_scores, dtype=np.float32)
    if s.ndim == 3:
        s = s[..., 0]
    if s.shape != tuple(shape):
        raise ValueError(f"top_scores: expected shape {tuple(shape)} or {tuple(shape)} + (m,), got {s.shape}")
    return s


def _env_keys(values: Any, name: str, n_envs: int) -> np.ndarray:
    a = np.asarray(values)
    if a.shape != (n_envs,):
        raise ValueError(f"{name}: expected one entry per environment, shape ({n_envs},), got {a.shape}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got dtype {a.dtype}")
    return a

__all__ = [
    "ConfidenceSplit",
    "GroupStats",
    "InstabilityResult",
    "RepeatAnalysis",
    "instability",
]
