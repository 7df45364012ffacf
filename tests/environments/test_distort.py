"""The fused distortion kernel against its numpy reference, determinism and API checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import instab.environments.distort as D
from instab._native import core
from instab.environments.registry import mix_seed
from tests import reference as R

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Parameter ranges the strategies draw from (inside each kind's domain).
_DOMAINS = {
    "brightness": [(-0.5, 0.5)],
    "contrast": [(0.0, 2.5)],
    "saturation": [(0.0, 3.0)],
    "hue": [(-1.0, 1.0)],
    "gamma": [(0.2, 4.0)],
    "gaussian": [(0.0, 0.4)],
    "poisson": [(0.0, 0.1), (0.0, 0.05)],
}


@st.composite
def ops_strategy(draw, max_ops: int = 5):
    n = draw(st.integers(0, max_ops))
    ops = []
    for _ in range(n):
        kind = draw(st.sampled_from(sorted(_DOMAINS)))
        lo, hi = [], []
        for dmin, dmax in _DOMAINS[kind]:
            a = draw(st.floats(dmin, dmax))
            b = draw(st.floats(dmin, dmax)) if draw(st.booleans()) else a
            lo.append(min(a, b))
            hi.append(max(a, b))
        while len(lo) < 2:
            lo.append(0.0)
            hi.append(0.0)
        ops.append((kind, draw(st.integers(0, 2**64 - 1)), lo, hi))
    return ops


@st.composite
def images_strategy(draw):
    n = draw(st.integers(1, 3))
    h = draw(st.integers(1, 9))
    w = draw(st.integers(1, 9))
    c = draw(st.sampled_from([1, 3, 4]))
    seed = draw(st.integers(0, 2**32))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    x = rng.uniform(-0.2, 1.2, (n, h, w, c)).astype(np.float32)
    if draw(st.booleans()):
        x[0, 0, 0, 0] = np.nan  # NaN counts as 0
    return x


def as_arrays(ops):
    kinds = np.array([R.DISTORT_KINDS[k] for k, _, _, _ in ops], dtype=np.int32)
    seeds = np.array([s for _, s, _, _ in ops], dtype=np.uint64)
    lo = np.array([lo for _, _, lo, _ in ops], dtype=np.float64).reshape(-1, 2)
    hi = np.array([hi for _, _, _, hi in ops], dtype=np.float64).reshape(-1, 2)
    return kinds, seeds, lo, hi


def run_core(x, ops, first_index=0, out_dtype=None, threads=1):
    return core.distort_chain(x, *as_arrays(ops), first_index, out_dtype or str(x.dtype), threads)


@SETTINGS
@given(images_strategy(), ops_strategy(), st.integers(0, 2**40), st.sampled_from(["uint8", "float32"]))
def test_chain_matches_reference(x, ops, first_index, out_dtype):
    out, params = run_core(x, ops, first_index, out_dtype, threads=2)
    ref, ref_params = R.distort_chain(x, ops, first_index, out_dtype)
    np.testing.assert_array_equal(params, ref_params)
    assert out.dtype == np.dtype(out_dtype)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("kind", sorted(_DOMAINS))
@pytest.mark.parametrize(
    "shape", [(2, 1, 1, 3), (1, 1, 3, 3), (1, 3, 1, 3), (2, 5, 7, 3), (1, 23, 29, 4), (2, 17, 16, 1)]
)
def test_each_kind_matches_reference(kind, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    lo = [d[0] for d in _DOMAINS[kind]] + [0.0] * (2 - len(_DOMAINS[kind]))
    hi = [d[1] for d in _DOMAINS[kind]] + [0.0] * (2 - len(_DOMAINS[kind]))
    ops = [(kind, 7, lo, hi)]
    for od in ("uint8", "float32"):
        out, _ = run_core(x, ops, 5, od)
        ref, _ = R.distort_chain(x, ops, 5, od)
        np.testing.assert_array_equal(out, ref)


def test_thread_counts_and_batch_splits_are_bit_identical():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (7, 33, 21, 3), dtype=np.uint8)
    ops = [(k, 100 + j, lo, hi) for j, (k, lo, hi) in enumerate([
        ("hue", [-0.2, 0], [0.2, 0]), ("contrast", [0.5, 0], [1.5, 0]), ("gaussian", [0.02, 0], [0.2, 0]),
        ("gamma", [0.5, 0], [2.0, 0]), ("poisson", [0.0, 0.0], [0.05, 0.02]), ("saturation", [0, 0], [2, 0]),
    ])]
    full, params = run_core(x, ops, threads=1)
    for threads in (2, 3, 8):
        out, p = run_core(x, ops, threads=threads)
        np.testing.assert_array_equal(out, full)
        np.testing.assert_array_equal(p, params)
    for cut in (1, 4, 6):
        a, _ = run_core(x[:cut], ops, first_index=0, threads=2)
        b, _ = run_core(np.ascontiguousarray(x[cut:]), ops, first_index=cut, threads=2)
        np.testing.assert_array_equal(np.concatenate([a, b]), full)


def test_philox_matches_numpy_reference():
    streams = np.array([0, 1, 2**32 + 5, 2**64 - 1], dtype=np.uint64)
    counters = np.array([0, 2**32, 7, 2**64 - 1], dtype=np.uint64)
    for seed in (0, 1, 2**63 + 12345):
        np.testing.assert_array_equal(core.philox4x32(seed, streams, counters), R.philox4x32(seed, streams, counters))
        u = core.philox_uniform(seed, streams, counters)
        np.testing.assert_array_equal(u, R.philox_uniform2(seed, streams, counters))
        assert ((u > 0) & (u < 1)).all()


def test_philox_known_answer():
    # Random123's published known-answer test for philox4x32-10 with all-zero inputs.
    w = core.philox4x32(0, np.zeros(1, np.uint64), np.zeros(1, np.uint64))[0]
    assert [hex(v) for v in w] == ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]


def test_elementary_functions_are_accurate():
    u = np.linspace(1e-7, 1 - 1e-7, 200001, dtype=np.float32)
    np.testing.assert_allclose(R.log_f(u), np.log(u.astype(np.float64)), rtol=3e-7, atol=1e-7)
    c, s = R.sincos_turn(u)
    np.testing.assert_allclose(c, np.cos(2 * np.pi * u.astype(np.float64)), atol=4e-7)
    np.testing.assert_allclose(s, np.sin(2 * np.pi * u.astype(np.float64)), atol=4e-7)
    x = np.linspace(-85, 0, 100001, dtype=np.float32)
    np.testing.assert_allclose(R.exp_f(x), np.exp(x.astype(np.float64)), rtol=4e-7)


def test_gaussian_noise_statistics():
    x = np.full((4, 256, 256, 3), 0.5, dtype=np.float32)
    out = D.gaussian_noise(x, 0.05, seed=3)
    z = (out - 0.5) / 0.05
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    # Independent across channels and neighbouring pixels.
    assert abs(np.corrcoef(z[..., 0].ravel(), z[..., 1].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(z[:, :, :-1, 0].ravel(), z[:, :, 1:, 0].ravel())[0, 1]) < 0.01
    # Tail mass of a standard normal: P(|z| > 3) = 0.0027.
    assert abs((np.abs(z) > 3).mean() - 0.0027) < 0.0005


def test_poisson_noise_variance_follows_signal():
    levels = np.array([0.1, 0.5, 0.9], dtype=np.float32)
    x = np.broadcast_to(levels[None, None, :, None], (2, 512, 3, 1)).astype(np.float32).copy()
    shot, read = 0.004, 0.01
    out = D.poisson_noise(x, shot=shot, read=read, seed=1)
    var = (out - x).var(axis=(0, 1, 3))
    np.testing.assert_allclose(var, shot * levels + read**2, rtol=0.1)


def test_semantics_on_known_colours():
    red = np.zeros((1, 1, 1, 3), dtype=np.uint8)
    red[..., 0] = 255
    np.testing.assert_array_equal(D.hue(red, 1 / 3)[0, 0, 0], [0, 255, 0])
    np.testing.assert_array_equal(D.hue(red, -1 / 3)[0, 0, 0], [0, 0, 255])
    np.testing.assert_array_equal(D.saturation(red, 0.0)[0, 0, 0], [255, 255, 255])
    x = np.random.default_rng(0).integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(D.brightness(x, 0.0), x)
    np.testing.assert_array_equal(D.brightness(x, 1.0), 255)
    np.testing.assert_array_equal(D.gaussian_noise(x, 0.0), x)
    assert np.abs(D.hue(x, 0.0).astype(int) - x).max() <= 1
    assert np.abs(D.contrast(x, 1.0).astype(int) - x).max() <= 1
    flat = D.contrast(x, 0.0)  # every channel collapses to its mean
    means = (x / np.float32(255)).reshape(2, -1, 3).mean(axis=1)
    np.testing.assert_allclose(flat[:, 0, 0] / 255, means, atol=0.5 / 255 + 1e-6)
    g = D.gamma(x, 2.2, out_dtype="float32")
    np.testing.assert_allclose(g, (x / 255.0) ** 2.2, rtol=2e-6, atol=1e-7)


def test_alpha_passes_through_and_gray_ignores_colour_ops():
    x = np.random.default_rng(1).integers(0, 256, (2, 4, 5, 4), dtype=np.uint8)
    out = D.apply(x, [D.Op.make("hue", delta=0.3), D.Op.make("gaussian", sigma=0.1)], seed=2)
    np.testing.assert_array_equal(out[..., 3], x[..., 3])
    gray = x[..., :1].copy()
    np.testing.assert_array_equal(D.saturation(gray, 2.0), gray)
    np.testing.assert_array_equal(D.hue(gray, 0.25), gray)


def test_ranges_are_drawn_per_image_and_keyed_by_index():
    x = np.full((5, 2, 2, 3), 128, dtype=np.uint8)
    out = D.brightness(x, (-0.3, 0.3), seed=9)
    assert len({int(v) for v in out[:, 0, 0, 0]}) == 5
    np.testing.assert_array_equal(D.brightness(x[2:4], (-0.3, 0.3), seed=9, first_index=2), out[2:4])
    assert not np.array_equal(D.brightness(x, (-0.3, 0.3), seed=10), out)


def test_list_input_equals_batch_and_keeps_none():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (3, 8, 9, 3), dtype=np.uint8)
    ops = [D.Op.make("gaussian", sigma=0.1), D.Op.make("contrast", factor=(0.5, 1.5))]
    batch = D.apply(x, ops, seed=4)
    listed = D.apply([x[0], None, x[2]], ops, seed=4, threads=2)
    np.testing.assert_array_equal(listed[0], batch[0])
    assert listed[1] is None
    np.testing.assert_array_equal(listed[2], batch[2])
    sizes = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((3, 4), (5, 1), (1, 1))]
    for i, out in enumerate(D.apply(sizes, ops, seed=4)):
        np.testing.assert_array_equal(out, D.apply(sizes[i][None], ops, seed=4, first_index=i)[0])


def test_chain_function_and_ops_text():
    env = D.chain(["hue:delta=-0.05..0.05", D.Op.make("gamma", g=0.8), "noise:gaussian,sigma=0.02"])
    assert str(env) == "hue:delta=-0.05..0.05+gamma:g=0.8+noise:gaussian,sigma=0.02"
    x = np.random.default_rng(3).integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
    out = env(x, seed=5)
    seeded = [(op, mix_seed(5, j)) for j, op in enumerate(env.ops)]
    np.testing.assert_array_equal(out, D.apply_seeded(x, seeded)[0])
    np.testing.assert_array_equal(out, D.apply(x, env.ops, seed=5))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: D.brightness(x, 1.5), "brightness.delta"),
        (lambda x: D.contrast(x, (1.2, 0.8)), "lo > hi"),
        (lambda x: D.gamma(x, 0.0), "gamma.g"),
        (lambda x: D.gaussian_noise(x, float("nan")), "finite"),
        (lambda x: D.gaussian_noise(x, 0.1, seed=-1), "seed"),
        (lambda x: D.gaussian_noise(x, 0.1, threads=-2), "threads"),
        (lambda x: D.gaussian_noise(x, 0.1, out_dtype="float64"), "out_dtype"),
        (lambda x: D.Op.make("blur", sigma=1), "unknown distortion"),
        (lambda x: D.Op.make("hue", angle=1), "unknown parameter"),
        (lambda x: D.Op.make("hue"), "required"),
        (lambda x: D.chain([]), "at least one"),
        (lambda x: D.chain(["jpeg:q=5"]), "not a distortion"),
        (lambda x: D.brightness(x[..., :2].copy(), 0.1), "C in"),
        (lambda x: D.brightness(x[0], 0.1), r"\[N, H, W, C\]"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, match):
    x = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    with pytest.raises((ValueError, TypeError), match=match):
        call(x)


def test_core_checks_arguments():
    x = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    k, s, lo, hi = as_arrays([("gaussian", 0, [0.1, 0], [0.1, 0])])
    with pytest.raises(TypeError, match="images: expected uint8 or float32"):
        core.distort_chain(x.astype(np.int16), k, s, lo, hi, 0, "uint8", 1)
    with pytest.raises(ValueError, match="contiguous"):
        core.distort_chain(x[:, :, ::-1], k, s, lo, hi, 0, "uint8", 1)
    with pytest.raises(ValueError, match="kinds"):
        core.distort_chain(x, np.array([9], np.int32), s, lo, hi, 0, "uint8", 1)
    with pytest.raises(ValueError, match="lo"):
        core.distort_chain(x, k, s, lo[:, :1].copy(), hi, 0, "uint8", 1)
    with pytest.raises(ValueError, match=r"ops\[0\] \(gaussian\)"):
        core.distort_chain(x, k, s, -lo, hi, 0, "uint8", 1)
    with pytest.raises(TypeError, match="dtype|float32"):
        D.gaussian_noise(x.astype(np.float64), 0.1)
