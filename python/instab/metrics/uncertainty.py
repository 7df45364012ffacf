"""Uncertainty of the figures instab reports: confidence intervals and a paired test.

- :func:`wilson_interval`: the Wilson score interval of a proportion k/n
  (closed form; vectorized over arrays of counts).
- :func:`bootstrap_interval`: the percentile bootstrap interval of a mean over
  images, seeded. For 0/1 outcomes, resampling n of them with replacement gives
  a Binomial(n, k/n) count, so B resamples are B binomial draws, whatever n
  (a million images costs microseconds); other values (mean confidence, say)
  are resampled by index, in chunks, at O(n * n_boot).
- :func:`mcnemar`: McNemar's test of two binary outcomes on the same images
  (two environments, or two models): exact two-sided binomial p-value when
  fewer than 25 images disagree, else chi-square with continuity correction.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from instab._shared.validation import check_seed

# Below this many discordant pairs the chi-square approximation is poor; the
# exact binomial is cheap there (at most 2**24 in the denominator).
EXACT_BELOW = 25
# Resampled indices drawn per chunk in the general bootstrap path: memory does
# not grow with n * n_boot, and a chunk's indices and gathered values stay in
# cache (larger chunks measured up to 2x slower per draw).
_CHUNK_DRAWS = 1 << 16


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's paired test of outcomes A and B on the same images.

    ``b``: images where A is true and B false; ``c``: A false and B true (only
    these discordant images carry information). ``statistic``: the
    continuity-corrected chi-square ``(|b - c| - 1)**2 / (b + c)`` for
    ``method == "chi2"``, ``min(b, c)`` for ``method == "exact"``. ``p_value``:
    two-sided; 1.0 when no image disagrees.
    """

    b: int
    c: int
    statistic: float
    p_value: float
    method: str = "exact"  # "exact" (binomial, b + c < 25) or "chi2"


def check_level(level: Any, name: str = "level") -> float:
    """A confidence level: a real number strictly between 0 and 1 (bools refused)."""
    if isinstance(level, bool) or not isinstance(level, numbers.Real):
        raise TypeError(f"{name}: expected a number in (0, 1), got {type(level).__name__} {level!r}")
    if not 0.0 < float(level) < 1.0:  # also refuses NaN
        raise ValueError(f"{name}: expected a number in (0, 1), e.g. 0.95, got {level!r}")
    return float(level)


def check_n_boot(n_boot: Any, name: str = "n_boot") -> int:
    """A count of bootstrap resamples: a positive int (bools and floats refused)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral):
        raise TypeError(f"{name}: expected a positive int, got {type(n_boot).__name__} {n_boot!r}")
    if n_boot < 1:
        raise ValueError(f"{name}: expected a positive int, got {n_boot}")
    return int(n_boot)


def _z(level: float) -> float:
    """The two-sided normal quantile of ``level`` (1.96 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def wilson_interval(k: Any, n: Any, level: float = 0.95) -> tuple[Any, Any]:
    """The Wilson score interval of the proportion ``k / n``.

    Parameters
    ----------
    k, n : int or array_like of int
        Successes and trials, ``0 <= k <= n``; arrays broadcast together.
    level : float, default 0.95
        Confidence level, in (0, 1).

    Returns
    -------
    (lo, hi) : tuple of float, or of float arrays for array input
        ``0 <= lo <= k/n <= hi <= 1``; NaN where ``n == 0``.

    Raises
    ------
    TypeError
        If ``k`` or ``n`` are not integers, or ``level`` is not a number.
    ValueError
        If some ``k`` is outside ``0..n``, or ``level`` is outside (0, 1).

    Examples
    --------
    >>> lo, hi = wilson_interval(3, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.1078, 0.6032)
    """
    level = check_level(level)
    scalar = np.ndim(k) == 0 and np.ndim(n) == 0
    ka, na = _counts(k, "k"), _counts(n, "n")
    if np.any(ka < 0) or np.any(ka > na):
        raise ValueError(f"k, n: expected 0 <= k <= n, got k={k!r}, n={n!r}")
    z2 = _z(level) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        nf = na.astype(np.float64)
        p = ka / nf
        denom = 1.0 + z2 / nf
        centre = (p + z2 / (2.0 * nf)) / denom
        half = math.sqrt(z2) * np.sqrt(p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)) / denom
    # Exact ends where the formula meets them only up to rounding.
    lo = np.where(ka == 0, 0.0, np.clip(centre - half, 0.0, p))
    hi = np.where(ka == na, 1.0, np.clip(centre + half, p, 1.0))
    lo = np.where(na == 0, np.nan, lo)
    hi = np.where(na == 0, np.nan, hi)
    if scalar:
        return float(lo), float(hi)
    return lo, hi


def _counts(x: Any, name: str) -> np.ndarray:
    if isinstance(x, bool):
        raise TypeError(f"{name}: expected an int count, got bool")
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected int counts, got {type(x).__name__} {x!r}"[:200])
    return a.astype(np.int64)


def bootstrap_interval(
    flags_or_values: Any, level: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean over images (a rate, an accuracy, a mean confidence).

    Parameters
    ----------
    flags_or_values : array_like, 1-D
        One outcome per image: bools or 0/1 integers (a proportion), or any
        real numbers (a mean). NaN is refused: leave out unobserved entries.
    level : float, default 0.95
        Confidence level, in (0, 1).
    n_boot : int, default 1000
        Bootstrap resamples.
    seed : int, default 0
        Seed of the resampling (``numpy.random.default_rng``); the same seed
        gives the same interval.

    Returns
    -------
    (lo, hi) : tuple of float
        The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
        resampled means; ``(nan, nan)`` for an empty input.

    Notes
    -----
    0/1 outcomes take B binomial draws (resampling n Bernoulli outcomes with
    replacement gives a Binomial(n, k/n) count), so the cost does not depend
    on n. Other values are resampled by index in chunks: O(n * n_boot) time,
    bounded memory.

    Examples
    --------
    >>> import numpy as np
    >>> flags = np.arange(1000) < 300
    >>> lo, hi = bootstrap_interval(flags, seed=1)
    >>> 0.26 < lo < 0.3 < hi < 0.34
    True
    """
    level = check_level(level)
    n_boot = check_n_boot(n_boot)
    rng = np.random.default_rng(check_seed(seed))
    x = np.asarray(flags_or_values)
    if x.ndim != 1:
        raise ValueError(f"flags_or_values: expected a 1-D array (one value per image), got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"flags_or_values: expected bools or numbers, got dtype {x.dtype}")
    n = x.shape[0]
    if n == 0:
        return float("nan"), float("nan")
    if x.dtype.kind == "f" and np.isnan(x).any():
        raise ValueError("flags_or_values: contains NaN; leave out unobserved entries first")
    if x.dtype.kind == "b" or (x.dtype.kind in "iu" and not np.any((x != 0) & (x != 1))):
        means = rng.binomial(n, np.count_nonzero(x) / n, size=n_boot) / n
    else:
        means = _resampled_means(x.astype(np.float64), n_boot, rng)
    q = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [q, 1.0 - q])
    return float(lo), float(hi)


def _resampled_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples of ``x`` with replacement, drawn in chunks of indices."""
    n = x.shape[0]
    index_type = np.int32 if n <= np.iinfo(np.int32).max else np.int64
    means = np.empty(n_boot)
    rows = max(1, _CHUNK_DRAWS // n)  # resamples per chunk
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        if n <= _CHUNK_DRAWS:
            idx = rng.integers(0, n, size=(stop - start, n), dtype=index_type)
            means[start:stop] = x[idx].mean(axis=1)
            continue
        # One resample larger than a chunk: sum it piecewise.
        for b in range(start, stop):
            total = 0.0
            for left in range(n, 0, -_CHUNK_DRAWS):
                total += x[rng.integers(0, n, size=min(left, _CHUNK_DRAWS), dtype=index_type)].sum()
            means[b] = total / n
    return means


def mcnemar(a_correct: Any, b_correct: Any) -> McNemarResult:
    """McNemar's test: do outcomes A and B differ on the same images?

    Parameters
    ----------
    a_correct, b_correct : array_like of bool (or 0/1), 1-D, same length
        The outcome of each image under A and under B (e.g. correct in
        environment a and in environment b, or unstable under model a and
        under model b), paired by position.

    Returns
    -------
    McNemarResult
        ``b`` (A true, B false), ``c`` (A false, B true), the statistic, the
        two-sided p-value and the method. With ``b + c < 25`` the p-value is
        the exact binomial ``min(1, 2 * P[X <= min(b, c)])``,
        ``X ~ Binomial(b + c, 1/2)``; otherwise the chi-square (1 degree of
        freedom) survival of ``(|b - c| - 1)**2 / (b + c)``.

    Raises
    ------
    TypeError
        If an input holds something other than bools or 0/1 integers.
    ValueError
        If the inputs are not 1-D of the same length, or hold integers other
        than 0 and 1.

    Examples
    --------
    >>> r = mcnemar([1, 1, 1, 1, 0, 1], [0, 0, 0, 1, 1, 1])
    >>> r.b, r.c, r.method, round(r.p_value, 4)
    (3, 1, 'exact', 0.625)
    """
    a, b_ = _flags(a_correct, "a_correct"), _flags(b_correct, "b_correct")
    if a.shape != b_.shape:
        raise ValueError(f"a_correct, b_correct: expected the same images, got lengths {a.shape[0]} and {b_.shape[0]}")
    b = int(np.count_nonzero(a & ~b_))
    c = int(np.count_nonzero(~a & b_))
    m = b + c
    if m < EXACT_BELOW:
        # Exact in integers: 2 * P[X <= min(b, c)], X ~ Binomial(m, 1/2).
        tail = sum(math.comb(m, i) for i in range(min(b, c) + 1))
        return McNemarResult(b, c, float(min(b, c)), min(1.0, 2 * tail / 2**m), "exact")
    stat = (abs(b - c) - 1) ** 2 / m
    # Chi-square with 1 dof: P[chi2 > x] = P[|N(0,1)| > sqrt(x)] = erfc(sqrt(x / 2)).
    return McNemarResult(b, c, float(stat), math.erfc(math.sqrt(stat / 2.0)), "chi2")


def _flags(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array (one outcome per image), got shape {a.shape}")
    if a.dtype.kind == "b":
        return a
    if a.dtype.kind not in "iu" and a.size:
        raise TypeError(f"{name}: expected bools or 0/1 integers, got dtype {a.dtype}")
    if np.any((a != 0) & (a != 1)):
        raise ValueError(f"{name}: expected bools or 0/1 integers, got other values")
    return a.astype(bool)


__all__ = [
    "EXACT_BELOW",
    "McNemarResult",
    "bootstrap_interval",
    "check_level",
    "check_n_boot",
    "mcnemar",
    "wilson_interval",
]
