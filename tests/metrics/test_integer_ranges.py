"""instab.instability refuses integers it cannot represent, instead of wrapping them (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

import instab

PRED = np.array([[[7], [7]]], dtype=np.int64)


@pytest.mark.parametrize(
    "labels",
    [
        np.array([2**32 + 7]),  # used to count as class 7
        np.array([2**31]),
        np.array([2**64 - 1], dtype=np.uint64),  # used to become -1: an empty label set, silently wrong
        [2**64 - 1],  # used to raise OverflowError
        [[3, 2**40]],
        np.array([[7, 2**33]]),
    ],
)
def test_labels_beyond_int32_are_rejected(labels):
    with pytest.raises(ValueError, match="labels: class index .* for image 0 is out of range"):
        instab.instability(PRED, labels)


def test_huge_negative_labels_in_a_list_are_rejected():
    with pytest.raises(ValueError, match="labels: negative class index"):
        instab.instability(PRED, [[-(2**70)]])


def test_largest_int32_label_is_accepted():
    r = instab.instability(np.full((1, 2, 1), 2**31 - 1, np.int64), np.array([2**31 - 1], np.uint64))
    assert r.correct.all()


@pytest.mark.parametrize("n_classes", [None, 10])
def test_uint64_predictions_beyond_int64_are_rejected(n_classes):
    # 2**64 - 1 used to wrap to -1: "not observed", n_images = 0 and a NaN rate.
    pred = np.array([[[2**64 - 1], [3]], [[3], [3]]], dtype=np.uint64)
    with pytest.raises(ValueError, match="predictions: class index 18446744073709551615 at \\[0, 0\\] is out of range"):
        instab.instability(pred, [3, 3], n_classes=n_classes)


def test_uint64_predictions_in_range_still_work():
    pred = np.array([[[3], [4]], [[3], [3]]], dtype=np.uint64)
    r = instab.instability(pred, [3, 3])
    assert r.n_images == 2 and r.n_unstable == 1


@pytest.mark.parametrize("n_classes", [2.5, True, "3", 10.0])
def test_n_classes_must_be_an_int(n_classes):
    with pytest.raises(TypeError, match="n_classes: expected an int"):
        instab.instability(PRED, [7], n_classes=n_classes)


def test_n_classes_accepts_numpy_ints():
    assert instab.instability(PRED, [7], n_classes=np.int64(8)).n_images == 1
