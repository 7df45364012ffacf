"""Bootstrap intervals: the binomial trick and chunked resampling beside plain numpy loops.

Full size: 1,000,000 images, 1000 resamples. Under --benchmark-disable (CI's
correctness mode) 20,000 images, 500 resamples.

Group ``bootstrap-proportion-1M-B1000`` (30% of images unstable):
- ``binomial-trick``: :func:`instab.metrics.bootstrap_interval` on bools; a
  resample of n 0/1 outcomes has a Binomial(n, k/n) count, so B resamples are
  B binomial draws, whatever n.
- ``numpy-loop``: plain numpy, one ``flags[rng.integers(0, n, n)]`` per resample.

Group ``bootstrap-mean-1M-B1000`` (a mean of uniform values, e.g. confidences):
- ``index-chunks``: the same function's general path (resampled indices drawn
  in cache-sized chunks);
- ``numpy-loop``: plain numpy, one ``x[rng.integers(0, n, n)]`` per resample.

Each row's interval must agree with the other row's, computed untimed in the
same test with another seed, within a stated Monte-Carlo tolerance: two
independent bootstrap estimates of the ``q`` quantile of a mean differ with
standard deviation ``sqrt(2 q (1 - q) / B) / phi(z_q) * SE`` (asymptotically;
``phi`` the normal density, ``SE`` the mean's standard error). The tests allow
5 of those, plus 1/n for the discreteness of a count.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from instab.metrics import bootstrap_interval

LEVEL = 0.95


@pytest.fixture(scope="module")
def sizes(request):
    full = not request.config.getoption("benchmark_disable")
    return (1_000_000, 1000) if full else (20_000, 500)


@pytest.fixture(scope="module")
def flags(sizes):
    n, _ = sizes
    return np.random.default_rng(0).random(n) < 0.3


@pytest.fixture(scope="module")
def values(sizes):
    n, _ = sizes
    return np.random.default_rng(1).random(n)


def numpy_loop(x: np.ndarray, level: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Plain numpy: resample the images with replacement, one resample at a time."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    means = np.array([x[rng.integers(0, n, n)].mean() for _ in range(n_boot)])
    q = (1 - level) / 2
    lo, hi = np.quantile(means, [q, 1 - q])
    return float(lo), float(hi)


def mc_tolerance(se: float, n: int, n_boot: int, level: float) -> float:
    """5 standard deviations of the difference of two bootstrap interval ends, plus 1/n."""
    q = (1 - level) / 2
    density = math.exp(-(NormalDist().inv_cdf(q) ** 2) / 2) / math.sqrt(2 * math.pi)
    return 5 * math.sqrt(2 * q * (1 - q) / n_boot) / density * se + 1 / n


def _check_agree(got, ref, se, sizes):
    n, n_boot = sizes
    tol = mc_tolerance(se, n, n_boot, LEVEL)
    assert got[0] == pytest.approx(ref[0], abs=tol)
    assert got[1] == pytest.approx(ref[1], abs=tol)


@pytest.mark.benchmark(group="bootstrap-proportion-1M-B1000")
@pytest.mark.parametrize("impl", ["binomial-trick", "numpy-loop"])
def test_bootstrap_proportion(benchmark, flags, sizes, impl):
    _, n_boot = sizes
    if impl == "binomial-trick":
        got = benchmark(bootstrap_interval, flags, LEVEL, n_boot, 1)
        ref = numpy_loop(flags, LEVEL, n_boot, 2)
    else:
        got = benchmark.pedantic(numpy_loop, (flags, LEVEL, n_boot, 1), rounds=1)
        ref = bootstrap_interval(flags, LEVEL, n_boot, 2)
    p = float(flags.mean())
    _check_agree(got, ref, math.sqrt(p * (1 - p) / len(flags)), sizes)


@pytest.mark.benchmark(group="bootstrap-mean-1M-B1000")
@pytest.mark.parametrize("impl", ["index-chunks", "numpy-loop"])
def test_bootstrap_mean(benchmark, values, sizes, impl):
    _, n_boot = sizes
    if impl == "index-chunks":
        got = benchmark.pedantic(bootstrap_interval, (values, LEVEL, n_boot, 1), rounds=1)
        ref = numpy_loop(values, LEVEL, n_boot, 2)
    else:
        got = benchmark.pedantic(numpy_loop, (values, LEVEL, n_boot, 1), rounds=1)
        ref = bootstrap_interval(values, LEVEL, n_boot, 2)
    _check_agree(got, ref, float(values.std()) / math.sqrt(len(values)), sizes)
