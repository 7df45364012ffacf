"""The vectorized ranked path (an image's e * m >= 16 entries, 16 at a time; issue 19).

The hand-worked and small property tests in test_instability.py mostly stay
below 16 entries per image; these draw shapes on both sides of the 16-entry and
64-entry (one mask word) boundaries, every native index dtype, multi-label sets
and the errors, and compare with the numpy reference and with int64 input
(which takes the scalar path).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import instab
from tests.reference import instability_reference


@st.composite
def wide_problems(draw):
    n = draw(st.integers(1, 12))
    e = draw(st.integers(1, 24))
    m = draw(st.integers(1, 12))
    k = draw(st.integers(1, m))
    n_classes = draw(st.sampled_from([3, 40, 1000]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    width = draw(st.integers(1, 3))
    labels = [set(rng.integers(0, n_classes, width).tolist()) for _ in range(n)]
    # Few classes make hits common; unobserved rows are all -1.
    pred = rng.integers(0, n_classes, (n, e, m))
    pred[rng.random((n, e)) < draw(st.sampled_from([0.0, 0.3, 0.9]))] = -1
    dtype = draw(st.sampled_from([np.int16, np.int32, np.uint16, np.int8]))
    if dtype in (np.uint16,):
        pred = np.where(pred < 0, 0, pred)  # no -1 in unsigned input
    if dtype is np.int8 and n_classes > 127:
        dtype = np.int16
    return pred.astype(dtype), labels, k, n_classes, draw(st.integers(1, 3))


@settings(max_examples=120, deadline=None)
@given(wide_problems())
def test_wide_shapes_match_reference_and_int64(problem):
    pred, labels, k, n_classes, threads = problem
    got = instab.instability(pred, labels, k=k, n_classes=n_classes, threads=threads)
    ref = instability_reference(pred, labels, k)
    for key in ("correct", "observed", "unstable", "counted"):
        np.testing.assert_array_equal(getattr(got, key), ref[key], err_msg=key)
    for key in ("n_images", "n_unstable", "n_always_correct", "n_always_wrong"):
        assert getattr(got, key) == ref[key], key
    np.testing.assert_array_equal(got.accuracy, ref["accuracy"])
    wide = instab.instability(pred.astype(np.int64), labels, k=k, n_classes=n_classes, threads=1)
    np.testing.assert_array_equal(got.correct, wide.correct)
    assert got.n_unstable == wide.n_unstable


def test_labels_int16_cannot_hold_never_match():
    # Class 40000 truncated to int16 would be -25536 (or, masked, 40000 - 32768 = 7232):
    # an int16 prediction can never be class 40000.
    pred = np.full((2, 8, 4), 3, np.int16)
    pred[:, :, 1] = 7232
    r = instab.instability(pred, [40000, [40000, 3]], k=4)
    assert not r.correct[0].any() and r.correct[1].all()
    assert r.n_always_wrong == 1 and r.n_always_correct == 1


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64])
def test_errors_name_the_first_bad_row(dtype):
    pred = np.zeros((3, 10, 5), dtype)
    pred[1, 7, 4] = 12  # out of range, image 1
    pred[2, 3, 1] = -1  # hole in an observed row, image 2
    with pytest.raises(ValueError, match=r"predictions: class index 12 at \[1, 7\] is out of range"):
        instab.instability(pred, [0, 0, 0], k=5, n_classes=10, threads=2)
    pred[1, 7, 4] = 0
    with pytest.raises(ValueError, match=r"row \[2, 3\] is observed but has -1 within the top k"):
        instab.instability(pred, [0, 0, 0], k=5, n_classes=10)
    # Beyond k the -1 is allowed.
    assert instab.instability(pred, [0, 0, 0], k=1, n_classes=10).n_always_correct == 3
    pred[0, 0, 2] = -7
    with pytest.raises(ValueError, match=r"class index -7 at \[0, 0\]"):
        instab.instability(pred, [0, 0, 0], k=1)


def test_narrow_input_is_read_without_widening():
    # uint8/int8 fit int16 exactly and uint16 fits int32: the same result as int64.
    rng = np.random.default_rng(5)
    pred = rng.integers(0, 200, (50, 6, 5))
    labels = rng.integers(0, 200, 50)
    ref = instab.instability(pred, labels, k=3)
    for dtype in (np.uint8, np.int16, np.uint16, np.int32, np.uint32):
        got = instab.instability(pred.astype(dtype), labels, k=3)
        np.testing.assert_array_equal(got.correct, ref.correct)
