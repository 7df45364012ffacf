"""Intervals and the paired test: answers worked by hand, properties, bad input, a million images."""

from __future__ import annotations

import math
import sys
import time
from fractions import Fraction
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import instab
from instab.metrics import McNemarResult, bootstrap_interval, mcnemar, wilson_interval
from instab.metrics.uncertainty import EXACT_BELOW

# ---------------------------------------------------------------- known answers


def test_wilson_textbook_value():
    # k=3, n=10 at 95%: (0.1078, 0.6032), the value in Newcombe (1998), Table I.
    # By hand: z^2 = 3.8415, centre = (0.3 + z^2/20) / (1 + z^2/10) = 0.35550,
    # half = z * sqrt(0.021 + z^2/400) / (1 + z^2/10) = 0.24772.
    lo, hi = wilson_interval(3, 10)
    assert lo == pytest.approx(0.10779, abs=1e-5)
    assert hi == pytest.approx(0.60322, abs=1e-5)
    assert isinstance(lo, float) and isinstance(hi, float)


def test_wilson_ends_and_empty():
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    # k = 0: hi = z^2 / (n + z^2)
    z2 = NormalDist().inv_cdf(0.975) ** 2
    assert wilson_interval(0, 10)[1] == pytest.approx(z2 / (10 + z2))
    lo, hi = wilson_interval(0, 0)
    assert math.isnan(lo) and math.isnan(hi)


def test_wilson_vectorized_matches_scalar():
    k = np.array([0, 3, 7, 10, 0])
    n = np.array([10, 10, 10, 10, 0])
    lo, hi = wilson_interval(k, n, 0.9)
    for i in range(len(k)):
        want = wilson_interval(int(k[i]), int(n[i]), 0.9)
        np.testing.assert_array_equal([lo[i], hi[i]], want)


def test_mcnemar_exact_by_hand():
    # 10 images: A right & B wrong on 1, A wrong & B right on 6, agree on 3.
    a = [1, 0, 0, 0, 0, 0, 0, 1, 1, 0]
    b = [0, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    r = mcnemar(a, b)
    assert (r.b, r.c, r.method) == (1, 6, "exact")
    # X ~ Binomial(7, 1/2): P[X <= 1] = (1 + 7) / 128; two-sided: 16 / 128.
    assert r.p_value == 16 / 128
    assert r.statistic == 1.0
    swapped = mcnemar(b, a)
    assert (swapped.b, swapped.c, swapped.p_value) == (6, 1, r.p_value)


def test_mcnemar_exact_against_enumeration():
    # Every split of m < 25 discordant images: the two-sided p-value summed term by term.
    for m in range(EXACT_BELOW):
        for b in range(m + 1):
            a_flags = np.r_[np.ones(b, bool), np.zeros(m - b, bool)]
            r = mcnemar(a_flags, ~a_flags)
            tail = sum(Fraction(math.comb(m, i), 2**m) for i in range(min(b, m - b) + 1))
            assert r.p_value == pytest.approx(float(min(Fraction(1), 2 * tail)), rel=1e-12)


def test_mcnemar_chi_square_with_continuity_correction():
    # b=30, c=10: (|30 - 10| - 1)^2 / 40 = 9.025; chi2(1) survival = 2 * (1 - Phi(sqrt(9.025))).
    a = np.r_[np.ones(30, bool), np.zeros(10, bool), np.ones(5, bool)]
    b = np.r_[np.zeros(30, bool), np.ones(10, bool), np.ones(5, bool)]
    r = mcnemar(a, b)
    assert (r.b, r.c, r.method) == (30, 10, "chi2")
    assert r.statistic == pytest.approx(9.025)
    assert r.p_value == pytest.approx(2 * (1 - NormalDist().cdf(math.sqrt(9.025))), rel=1e-9)
    assert r.p_value == pytest.approx(0.002663, abs=1e-6)  # scipy.stats.chi2.sf(9.025, 1)


def test_mcnemar_switches_at_25_and_handles_no_disagreement():
    same = mcnemar([True, False, True], [True, False, True])
    assert same == McNemarResult(0, 0, 0.0, 1.0, "exact")
    assert mcnemar(np.ones(24, bool), np.zeros(24, bool)).method == "exact"
    r = mcnemar(np.ones(25, bool), np.zeros(25, bool))
    assert r.method == "chi2" and r.statistic == pytest.approx(24**2 / 25)
    assert mcnemar([], []).p_value == 1.0


def test_bootstrap_reproducible_and_seeded():
    flags = np.random.default_rng(3).random(5000) < 0.2
    assert bootstrap_interval(flags, seed=7) == bootstrap_interval(flags, seed=7)
    assert bootstrap_interval(flags, seed=7) != bootstrap_interval(flags, seed=8)
    values = np.random.default_rng(3).random(2000)
    assert bootstrap_interval(values, n_boot=300, seed=7) == bootstrap_interval(values, n_boot=300, seed=7)
    # 0/1 integers are 0/1 outcomes: the same binomial draws as bools.
    assert bootstrap_interval(flags.astype(np.int8), seed=7) == bootstrap_interval(flags, seed=7)


def test_bootstrap_close_to_wilson_for_large_n():
    n, k = 100_000, 30_000
    flags = np.arange(n) < k
    lo, hi = bootstrap_interval(flags, n_boot=4000, seed=1)
    w_lo, w_hi = wilson_interval(k, n)
    # Half-width ~0.0028; the Monte-Carlo sd of each bootstrap end is ~0.00006 here.
    assert lo == pytest.approx(w_lo, abs=4e-4)
    assert hi == pytest.approx(w_hi, abs=4e-4)


def test_bootstrap_of_values_close_to_normal_interval():
    # The general (index-resampling) path: mean of 10,000 values, 1000 resamples.
    x = np.random.default_rng(5).normal(2.0, 3.0, 10_000)
    lo, hi = bootstrap_interval(x, n_boot=1000, seed=2)
    se = x.std() / math.sqrt(len(x))
    z = NormalDist().inv_cdf(0.975)
    # Each end's Monte-Carlo sd is ~0.085 se; allow 0.5 se.
    assert lo == pytest.approx(x.mean() - z * se, abs=0.5 * se)
    assert hi == pytest.approx(x.mean() + z * se, abs=0.5 * se)
    # 0/1 values as floats take the general path and agree with the binomial one.
    flags = np.arange(10_000) < 1_000
    b_lo, b_hi = bootstrap_interval(flags, n_boot=1000, seed=2)
    g_lo, g_hi = bootstrap_interval(flags.astype(np.float64), n_boot=1000, seed=2)
    se = math.sqrt(0.1 * 0.9 / 10_000)
    assert g_lo == pytest.approx(b_lo, abs=0.5 * se) and g_hi == pytest.approx(b_hi, abs=0.5 * se)


def test_bootstrap_general_path_chunks_large_resamples(monkeypatch):
    # A resample longer than a chunk is summed piecewise: same distribution, bounded memory.
    monkeypatch.setattr("instab.metrics.uncertainty._CHUNK_DRAWS", 64)
    x = np.random.default_rng(0).random(1000)
    lo, hi = bootstrap_interval(x, n_boot=400, seed=0)
    se = x.std() / math.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.6 * se)
    assert hi == pytest.approx(x.mean() + 1.96 * se, abs=0.6 * se)


def test_bootstrap_constant_and_empty():
    assert bootstrap_interval(np.ones(50, bool)) == (1.0, 1.0)
    assert bootstrap_interval(np.full(50, 0.25)) == (0.25, 0.25)
    lo, hi = bootstrap_interval([])
    assert math.isnan(lo) and math.isnan(hi)


# ---------------------------------------------------------------- properties

levels = st.floats(0.01, 0.999)


@given(n=st.integers(1, 10**9), frac=st.floats(0, 1), level=levels)
def test_wilson_contains_estimate(n, frac, level):
    k = round(frac * n)
    lo, hi = wilson_interval(k, n, level)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


@given(n=st.integers(1, 10**6), frac=st.floats(0, 1), l1=levels, l2=levels)
def test_wilson_monotone_in_level(n, frac, l1, l2):
    k = round(frac * n)
    small, large = sorted((l1, l2))
    lo_s, hi_s = wilson_interval(k, n, small)
    lo_l, hi_l = wilson_interval(k, n, large)
    assert lo_l <= lo_s and hi_s <= hi_l


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 10**6), frac=st.floats(0, 1), seed=st.integers(0, 2**63 - 1), l1=levels, l2=levels)
def test_bootstrap_properties(n, frac, seed, l1, l2):
    k = round(frac * n)
    flags = np.arange(n) < k
    small, large = sorted((l1, l2))
    lo_s, hi_s = bootstrap_interval(flags, small, n_boot=200, seed=seed)
    lo_l, hi_l = bootstrap_interval(flags, large, n_boot=200, seed=seed)
    assert 0.0 <= lo_l <= lo_s <= hi_s <= hi_l <= 1.0
    if large >= 0.5:  # a central interval this wide holds the estimate
        assert lo_l <= k / n <= hi_l


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=80))
def test_mcnemar_properties(pairs):
    a = np.array([p[0] for p in pairs], bool)
    b = np.array([p[1] for p in pairs], bool)
    r = mcnemar(a, b)
    assert r.b + r.c == int((a != b).sum())
    assert 0.0 <= r.p_value <= 1.0
    s = mcnemar(b, a)
    assert (s.b, s.c) == (r.c, r.b) and s.p_value == pytest.approx(r.p_value)


# ---------------------------------------------------------------- InstabilityResult


def _hand_worked() -> instab.InstabilityResult:
    # As in test_instability: image 1 and 2 unstable, image 0 always right, image 3 always wrong.
    pred = np.array([[[7], [7], [7]], [[2], [5], [2]], [[4], [3], [9]], [[0], [-1], [0]]])
    return instab.instability(pred, [7, 2, [3, 4], 1], top_scores=np.full((4, 3), 0.5))


def test_result_interval():
    r = _hand_worked()
    assert r.interval() == wilson_interval(2, 4)
    assert r.interval("always_correct", 0.9) == wilson_interval(1, 4, 0.9)
    assert r.interval("always_wrong") == wilson_interval(1, 4)
    lo, hi = r.interval(method="bootstrap", n_boot=500, seed=3)
    assert lo <= 0.5 <= hi
    assert r.interval(method="bootstrap", seed=3) == bootstrap_interval(np.arange(4) < 2, seed=3)


def test_result_accuracy_intervals():
    r = _hand_worked()
    lo, hi = r.accuracy_intervals()
    # Accuracy per environment: 3/4, 2/3 (image 3 unobserved in env 1), 2/4.
    want_lo, want_hi = wilson_interval(np.array([3, 2, 2]), np.array([4, 3, 4]))
    np.testing.assert_array_equal(lo, want_lo)
    np.testing.assert_array_equal(hi, want_hi)
    lo, hi = r.accuracy_intervals(method="bootstrap", n_boot=300, seed=1)
    assert lo.shape == hi.shape == (3,)
    assert np.all(lo <= r.accuracy) and np.all(r.accuracy <= hi)


def test_result_compare():
    labels = np.zeros(40, np.int64)
    rng = np.random.default_rng(0)
    good = rng.random((40, 3)) < 0.9
    a = instab.instability(np.where(good, 0, 1)[..., None], labels)
    flip = good.copy()
    flip[:12, 1] = ~flip[:12, 1]  # model B: images 0..11 change in one environment
    b = instab.instability(np.where(flip, 0, 1)[..., None], labels)
    r = a.compare(b)
    assert r == mcnemar(a.unstable, b.unstable)
    assert r.b == int((a.unstable & ~b.unstable).sum()) and r.c == int((~a.unstable & b.unstable).sum())
    assert a.compare(a) == McNemarResult(0, 0, 0.0, 1.0, "exact")
    with pytest.raises(ValueError, match="same 40 images"):
        a.compare(_hand_worked())
    with pytest.raises(TypeError, match="InstabilityResult"):
        a.compare(a.unstable)


def test_result_to_dataframe():
    pd = pytest.importorskip("pandas")
    r = _hand_worked()
    df = r.to_dataframe()
    assert list(df.columns) == ["image", "environment", "observed", "correct", "confidence", "unstable", "counted"]
    assert len(df) == 12
    assert df["image"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert df["environment"].tolist() == [0, 1, 2] * 4
    assert df.dtypes["image"] == np.int64
    assert df.dtypes["correct"].kind == df.dtypes["unstable"].kind == df.dtypes["observed"].kind == "b"
    assert df["correct"].tolist() == r.correct.reshape(-1).tolist()
    assert df.loc[df["image"] == 3, "observed"].tolist() == [True, False, True]
    assert np.isnan(df.loc[10, "confidence"]) and df.loc[9, "confidence"] == 0.5
    assert df.groupby("image")["unstable"].first().tolist() == r.unstable.tolist()
    # Without confidence the column is all NaN.
    plain = instab.instability(np.array([[[1], [2]]]), [1]).to_dataframe()
    assert plain["confidence"].isna().all()
    assert isinstance(df, pd.DataFrame)


def test_result_to_dataframe_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"instab\[export\]"):
        _hand_worked().to_dataframe()


def test_million_images_well_under_a_second():
    rng = np.random.default_rng(0)
    n, e = 1_000_000, 4
    correct = rng.random((n, e)) < 0.85
    a = instab.instability(np.where(correct, 0, 1).astype(np.int32)[..., None], np.zeros(n, np.int32), threads=1)
    b_correct = correct.copy()
    b_correct[: n // 100, 0] = True
    b = instab.instability(np.where(b_correct, 0, 1).astype(np.int32)[..., None], np.zeros(n, np.int32), threads=1)
    start = time.perf_counter()
    rate = a.interval()
    boot = a.interval(method="bootstrap", n_boot=2000, seed=0)
    acc = a.accuracy_intervals()
    acc_boot = a.accuracy_intervals(method="bootstrap", seed=0)
    paired = a.compare(b)
    envs = mcnemar(a.correct[:, 0], a.correct[:, 1])
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"uncertainty of a million images took {elapsed:.2f} s"
    assert rate[0] < a.rate < rate[1] and boot[0] < a.rate < boot[1]
    assert np.all(acc[0] < a.accuracy) and np.all(acc_boot[1] > a.accuracy)
    assert paired.method == "chi2" and paired.p_value < 1e-6  # B is stabler on 1% of images
    assert envs.p_value > 1e-4  # environments 0 and 1 are alike


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: wilson_interval(3, 10, 1.0), ValueError, r"level: expected a number in \(0, 1\)"),
        (lambda: wilson_interval(3, 10, 0), ValueError, "level"),
        (lambda: wilson_interval(3, 10, float("nan")), ValueError, "level"),
        (lambda: wilson_interval(3, 10, True), TypeError, "level"),
        (lambda: wilson_interval(3, 10, "0.95"), TypeError, "level"),
        (lambda: wilson_interval(11, 10), ValueError, "0 <= k <= n"),
        (lambda: wilson_interval(-1, 10), ValueError, "0 <= k <= n"),
        (lambda: wilson_interval(3.0, 10), TypeError, "k: expected int"),
        (lambda: wilson_interval(3, True), TypeError, "n: expected an int"),
        (lambda: bootstrap_interval([True], n_boot=0), ValueError, "n_boot: expected a positive int"),
        (lambda: bootstrap_interval([True], n_boot=10.0), TypeError, "n_boot"),
        (lambda: bootstrap_interval([True], n_boot=True), TypeError, "n_boot"),
        (lambda: bootstrap_interval([True], seed=-1), ValueError, "seed"),
        (lambda: bootstrap_interval([True], seed=1.5), TypeError, "seed"),
        (lambda: bootstrap_interval([True], level=95), ValueError, "level"),
        (lambda: bootstrap_interval([[True]]), ValueError, "1-D"),
        (lambda: bootstrap_interval(["a"]), TypeError, "bools or numbers"),
        (lambda: bootstrap_interval([0.5, float("nan")]), ValueError, "NaN"),
        (lambda: mcnemar([True, False], [True]), ValueError, "lengths 2 and 1"),
        (lambda: mcnemar([[True]], [[True]]), ValueError, "1-D"),
        (lambda: mcnemar([0, 2], [0, 1]), ValueError, "0/1"),
        (lambda: mcnemar([0.5], [1.0]), TypeError, "bools or 0/1"),
        (lambda: _hand_worked().interval("accuracy"), ValueError, "what: expected one of rate"),
        (lambda: _hand_worked().interval(method="normal"), ValueError, "method: expected one of wilson, bootstrap"),
        (lambda: _hand_worked().interval(level=1.5), ValueError, "level"),
        (lambda: _hand_worked().interval(method="bootstrap", n_boot=-5), ValueError, "n_boot"),
        (lambda: _hand_worked().accuracy_intervals(seed=-1), ValueError, "seed"),
        (lambda: _hand_worked().accuracy_intervals(n_boot=0), ValueError, "n_boot"),
        (lambda: _hand_worked().interval(n_boot=2.0), TypeError, "n_boot"),
        (lambda: _hand_worked().accuracy_intervals(method="exact"), ValueError, "method"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
