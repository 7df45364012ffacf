"""The instability metric: hand-worked example, references, properties, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import instab
from instab._native import core
from tests.reference import instability_reference, pairwise_reference, topk_reference


def test_hand_worked_example():
    # 4 images x 3 environments, top-1 ranked predictions; -1 = not observed.
    # image 0 (label 7):    7, 7, 7   -> always correct, stable
    # image 1 (label 2):    2, 5, 2   -> unstable
    # image 2 (labels 3|4): 4, 3, 9   -> correct, correct, wrong -> unstable
    # image 3 (label 1):    0, -, 0   -> always wrong, stable (observed twice)
    pred = np.array([[[7], [7], [7]], [[2], [5], [2]], [[4], [3], [9]], [[0], [-1], [0]]])
    labels = [7, 2, [3, 4], 1]
    r = instab.instability(pred, labels)
    assert r.n_images == 4
    assert r.n_unstable == 2
    assert r.rate == 0.5
    assert r.n_always_correct == 1 and r.n_always_wrong == 1
    assert r.unstable.tolist() == [False, True, True, False]
    # accuracy per env: env0 3/4, env1 2/3 (image 3 unobserved), env2 2/4
    np.testing.assert_allclose(r.accuracy, [0.75, 2 / 3, 0.5])
    # pairwise: (0,1): images 0,1,2 both observed; differ on image 1 -> 1/3
    #           (0,2): images 0..3; differ on image 2 -> 1/4
    #           (1,2): images 0,1,2; differ on 1 and 2 -> 2/3
    p = r.pairwise()
    np.testing.assert_allclose(p, [[0, 1 / 3, 1 / 4], [1 / 3, 0, 2 / 3], [1 / 4, 2 / 3, 0]])
    g = r.by_group([0, 0, 1, 1])
    assert g.keys.tolist() == [0, 1]
    assert g.n_unstable.tolist() == [1, 1] and g.rate.tolist() == [0.5, 0.5]
    np.testing.assert_allclose(g.accuracy, [[1, 0.5, 1], [0.5, 1, 0]])


def test_topk_makes_more_images_correct():
    # image labelled 3: top-1 is wrong in env 0 but 3 is second; top-2 counts it right.
    pred = np.array([[[1, 3], [3, 1]]])
    assert instab.instability(pred, [3], k=1).n_unstable == 1
    assert instab.instability(pred, [3], k=2).n_unstable == 0


def test_image_seen_once_is_not_counted():
    pred = np.array([[[1], [-1]], [[1], [2]]])
    r = instab.instability(pred, [1, 1])
    assert r.counted.tolist() == [False, True]
    assert r.n_images == 1 and r.n_unstable == 1 and r.rate == 1.0


def test_scores_match_ranked_and_give_confidence():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 4, 20)).astype(np.float32)
    labels = rng.integers(0, 20, 50)
    ranked = np.argsort(-scores, axis=-1, kind="stable")[..., :3]
    for k in (1, 2, 3):
        a = instab.instability(scores, labels, k=k)
        b = instab.instability(ranked, labels, k=k, top_scores=np.sort(scores, -1)[..., ::-1][..., :3])
        np.testing.assert_array_equal(a.correct, b.correct)
        np.testing.assert_array_equal(a.confidence, b.confidence)
    np.testing.assert_array_equal(a.confidence, scores.max(-1))


def test_ties_break_to_lower_class_index():
    # classes 2 and 5 tie for first: a stable sort ranks 2 first.
    scores = np.zeros((1, 2, 8), dtype=np.float64)
    scores[0, :, 2] = scores[0, :, 5] = 1.0
    assert instab.instability(scores, [2], k=1).correct.all()
    assert not instab.instability(scores, [5], k=1).correct.any()
    assert instab.instability(scores, [5], k=2).correct.all()


def test_confidence_split_and_repeat_analysis():
    # device 0 shots (cols 0,1), device 1 shots (cols 2,3); repeat index 0,1,0,1
    pred = np.array(
        [
            [[1], [1], [2], [2]],  # stable within devices, unstable across
            [[1], [2], [1], [1]],  # unstable within device 0
            [[1], [1], [1], [1]],
        ]
    )
    scores = np.array([[0.9, 0.8, 0.3, 0.4], [0.7, 0.2, 0.6, 0.5], [0.99, 0.98, 0.97, 0.96]])
    r = instab.instability(pred, [1, 1, 1], top_scores=scores)
    ra = r.repeat_analysis(device=[0, 0, 1, 1], repeat=[0, 1, 0, 1])
    assert ra.within == {0: pytest.approx(1 / 3), 1: 0.0}
    # across at repeat 0: cols 0,2 -> image 0 differs; repeat 1: cols 1,3 -> images 0 and 1 differ
    assert ra.across == {0: pytest.approx(1 / 3), 1: pytest.approx(2 / 3)}
    assert ra.within_mean == pytest.approx(1 / 6) and ra.across_mean == pytest.approx(0.5)
    split = r.confidence_split()
    np.testing.assert_allclose(np.sort(split.stable), [0.96, 0.97, 0.98, 0.99])
    assert split.unstable.size == 8


label_sets = st.lists(st.integers(0, 11), min_size=1, max_size=3).map(set)


@st.composite
def problems(draw):
    n = draw(st.integers(1, 9))
    e = draw(st.integers(1, 6))
    k = draw(st.integers(1, 4))
    n_classes = 12
    labels = [draw(label_sets) for _ in range(n)]
    use_scores = draw(st.booleans())
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    unobserved = rng.random((n, e)) < draw(st.sampled_from([0.0, 0.3, 0.7]))
    if use_scores:
        # Few distinct values, so ties are common.
        dtype = draw(st.sampled_from([np.float32, np.float64]))
        pred = rng.integers(0, 4, (n, e, n_classes)).astype(dtype)
        pred[unobserved] = np.nan
    else:
        m = draw(st.integers(k, 6))
        dtype = draw(st.sampled_from([np.int32, np.int64]))
        pred = np.stack([rng.permutation(n_classes)[:m] for _ in range(n * e)]).reshape(n, e, m).astype(dtype)
        pred[unobserved] = -1
    return pred, labels, k, draw(st.integers(1, 4))


@settings(max_examples=150, deadline=None)
@given(problems())
def test_matches_reference(problem):
    pred, labels, k, threads = problem
    got = instab.instability(pred, labels, k=k, n_classes=12, threads=threads)
    ref = instability_reference(pred, labels, k)
    np.testing.assert_array_equal(got.correct, ref["correct"])
    np.testing.assert_array_equal(got.observed, ref["observed"])
    np.testing.assert_array_equal(got.unstable, ref["unstable"])
    np.testing.assert_array_equal(got.counted, ref["counted"])
    for key in ("n_images", "n_unstable", "n_always_correct", "n_always_wrong"):
        assert getattr(got, key) == ref[key], key
    np.testing.assert_array_equal(got.accuracy, ref["accuracy"])
    np.testing.assert_array_equal(got.pairwise(), pairwise_reference(got.correct, got.observed))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 4), st.integers(0, 1000))
def test_identical_for_any_thread_count(n, e, seed):
    rng = np.random.default_rng(seed)
    scores = rng.random((n, e, 30)).astype(np.float32)
    labels = rng.integers(0, 30, n)
    base = instab.instability(scores, labels, k=3, threads=1)
    for t in (2, 3, 8):
        other = instab.instability(scores, labels, k=3, threads=t)
        np.testing.assert_array_equal(base.correct, other.correct)
        assert base.n_unstable == other.n_unstable and base.n_always_wrong == other.n_always_wrong
        np.testing.assert_array_equal(base.accuracy, other.accuracy)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(1, 15), st.integers(1, 15), st.integers(0, 100), st.integers(1, 3))
def test_topk_kernel_matches_reference(rows, c, k, seed, threads):
    k = min(k, c)
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, (rows, c)).astype(np.float64)
    scores[rng.random((rows, c)) < 0.2] = np.nan
    scores[rng.random((rows, c)) < 0.1] = -np.inf
    idx, val = core.topk(scores, k, threads)
    ref_idx, ref_val = topk_reference(scores, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)


@pytest.mark.parametrize(
    "pred, labels, kwargs, exc, words",
    [
        (np.zeros((2, 3)), [0, 0], {}, ValueError, "predictions: expected a 3-D"),
        (np.zeros((0, 3, 2), int), [], {}, ValueError, "predictions: empty"),
        (np.array([[["a"], ["b"]]]), [0], {}, TypeError, "predictions: expected integer"),
        (np.zeros((2, 2, 1), int), [0], {}, ValueError, "labels: has 1 entries"),
        (np.zeros((1, 2, 2), int), [0], {"k": 3}, ValueError, "k: must be in 1..2"),
        (np.zeros((1, 2, 2), int), [0], {"k": 0}, ValueError, "k: must be in 1..2"),
        (np.zeros((1, 2, 2), int), [0], {"k": 1.5}, TypeError, "k: expected an int"),
        (np.zeros((1, 2, 1), int), [5], {"n_classes": 5}, ValueError, "labels: class index 5"),
        (np.full((1, 2, 1), 7), [0], {"n_classes": 5}, ValueError, "predictions: class index 7"),
        (np.full((1, 2, 1), -3), [0], {}, ValueError, "predictions: class index -3"),
        (np.zeros((1, 2, 4), np.float32), [4], {}, ValueError, "labels: class index 4"),
        (np.zeros((1, 2, 1), int), [[]], {}, ValueError, "labels: image 0 has an empty label set"),
        (np.zeros((1, 2, 1), int), [-2], {}, ValueError, "labels: negative class index"),
        (np.zeros((1, 2, 1), int), ["cat"], {}, TypeError, "labels: image 0 holds 'cat'"),
        (np.zeros((1, 2, 1), int), np.array([0.5]), {}, TypeError, "labels: expected integer"),
        (np.zeros((1, 2, 1), int), [0], {"threads": 0}, ValueError, "threads:"),
    ],
)
def test_bad_input_names_the_argument(pred, labels, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        instab.instability(pred, labels, **kwargs)


def test_partly_nan_row_is_rejected():
    scores = np.zeros((1, 2, 3), np.float32)
    scores[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match=r"predictions: scores row \[0, 1\] has 1 NaN"):
        instab.instability(scores, [0])


def test_observed_row_with_missing_topk_is_rejected():
    with pytest.raises(ValueError, match=r"has -1 within the top k"):
        instab.instability(np.array([[[1, -1], [1, 2]]]), [1], k=2)


def test_group_and_repeat_arguments_are_checked():
    r = instab.instability(np.array([[[1], [1]]]), [1])
    with pytest.raises(ValueError, match="groups: expected shape"):
        r.by_group([0, 1])
    with pytest.raises(ValueError, match="device: expected one entry per environment"):
        r.repeat_analysis(device=[0], repeat=[0, 1])
    with pytest.raises(ValueError, match="distinct"):
        r.repeat_analysis(device=[0, 0], repeat=[1, 1])
    with pytest.raises(ValueError, match="confidence: not available"):
        r.confidence_split()
