"""InstabilityCounter: the in-memory metric's counts, summed over any split of the images into groups."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import instab
from instab.metrics.streaming import InstabilityCounter
from tests.reference import instability_reference


def _random(rng: np.random.Generator, n: int, e: int, m: int, n_classes: int) -> tuple[np.ndarray, list]:
    pred = rng.integers(0, n_classes, size=(n, e, m))
    pred[rng.random((n, e)) < 0.25] = -1  # not observed
    labels = [rng.choice(n_classes, size=rng.integers(1, 3), replace=False).tolist() for _ in range(n)]
    return pred, labels


def _check_equal(counted, whole) -> None:
    assert (counted.n_unstable, counted.n_images, counted.n_always_correct, counted.n_always_wrong) == (
        whole.n_unstable, whole.n_images, whole.n_always_correct, whole.n_always_wrong)
    np.testing.assert_array_equal(counted.accuracy, whole.accuracy)  # NaN where nothing was observed
    assert counted.rate == whole.rate or (np.isnan(counted.rate) and np.isnan(whole.rate))
    np.testing.assert_array_equal(counted.interval(), whole.interval())
    for a, b in zip(counted.accuracy_intervals(), whole.accuracy_intervals(), strict=True):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), e=st.integers(1, 6), m=st.integers(1, 4), k=st.integers(1, 4), seed=st.integers(0, 9999),
       cuts=st.lists(st.integers(0, 40), max_size=5), threads=st.sampled_from([None, 1, 2]))
def test_any_split_counts_as_the_whole(n, e, m, k, seed, cuts, threads):
    k = min(k, m)
    pred, labels = _random(np.random.default_rng(seed), n, e, m, n_classes=6)
    whole = instab.instability(pred, labels, k=k)
    counter = InstabilityCounter(e, k, threads=threads)
    bounds = sorted({0, n, *[c for c in cuts if c <= n]})
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        counter.add(pred[lo:hi], labels[lo:hi])
    counted = counter.result()
    _check_equal(counted, whole)
    assert counted.n_seen == n and counted.groups == len(bounds) - 1
    ref = instability_reference(pred, labels, k)
    assert counted.n_unstable == int(ref["unstable"].sum())


def test_groups_in_any_order_and_empty_groups():
    rng = np.random.default_rng(3)
    pred, labels = _random(rng, 50, 4, 3, n_classes=5)
    whole = instab.instability(pred, labels, k=2)
    counter = InstabilityCounter(4, 2)
    order = rng.permutation(50)
    counter.add(np.zeros((0, 4, 3), dtype=np.int64), [])
    for part in np.array_split(order, 7):
        counter.add(pred[part], [labels[i] for i in part])
    _check_equal(counter.result(), whole)


def test_nothing_counted_is_nan():
    counter = InstabilityCounter(2, 1)
    counter.add(np.array([[[3], [-1]]]), [[3]])  # observed once: not counted
    r = counter.result()
    assert r.n_images == 0 and np.isnan(r.rate) and r.n_seen == 1
    assert all(np.isnan(v) for v in r.interval())
    assert r.accuracy[0] == 1.0 and np.isnan(r.accuracy[1])


def test_bad_input():
    with pytest.raises(ValueError, match="n_envs: expected a positive int"):
        InstabilityCounter(0)
    counter = InstabilityCounter(3, 1)
    with pytest.raises(ValueError, match=r"predictions: expected shape \[images, 3, m\]"):
        counter.add(np.zeros((2, 2, 1), dtype=np.int64), [1, 2])
    with pytest.raises(ValueError, match="what"):
        counter.result().interval("nonsense")
