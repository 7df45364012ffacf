"""instab.isp.demosaic: bit-exact to its numpy reference on any shape, pattern and method (issue 19)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instab import isp
from tests.reference import demosaic_reference

METHODS = ("bilinear", "malvar", "ha")


@st.composite
def mosaics(draw):
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    # Tiny and odd shapes, and widths past one or two vectors (8 uint16 / 16 uint8 lanes).
    h = draw(st.integers(2, 9))
    w = draw(st.sampled_from([2, 3, 4, 5, 7, 9, 16, 17, 18, 19, 33, 34, 41]))
    peak = int(np.iinfo(dtype).max)
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    # Extremes as well as random values: the clipping and rounding edges.
    kind = draw(st.sampled_from(["uniform", "extremes", "few"]))
    if kind == "uniform":
        m = rng.integers(0, peak + 1, (h, w))
    elif kind == "extremes":
        m = rng.choice([0, 1, peak - 1, peak], (h, w))
    else:
        m = rng.integers(0, 4, (h, w)) * (peak // 3)
    return m.astype(dtype)


@settings(max_examples=150, deadline=None)
@given(mosaics(), st.sampled_from(isp.PATTERNS), st.sampled_from(METHODS), st.booleans(), st.integers(1, 3))
def test_matches_reference(mosaic, pattern, method, to_float, threads):
    out_dtype = "float32" if to_float else None
    got = isp.demosaic(mosaic, pattern, method, out_dtype=out_dtype, threads=threads)
    ref = demosaic_reference(mosaic, pattern, method, out_dtype)
    assert got.dtype == ref.dtype and got.shape == mosaic.shape + (3,)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("method", METHODS)
def test_batch_and_threads_give_the_same_bits(method):
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 65536, (3, 31, 45)).astype(np.uint16)
    one = np.stack([isp.demosaic(m, "grbg", method, threads=1) for m in batch])
    for t in (2, 5):
        np.testing.assert_array_equal(isp.demosaic(batch, "grbg", method, threads=t), one)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_flat_mosaic_stays_flat_and_own_colour_is_kept(dtype):
    m = np.full((6, 10), 77, dtype)
    for method in METHODS:
        np.testing.assert_array_equal(isp.demosaic(m, "rggb", method), 77)
    rng = np.random.default_rng(0)
    m = rng.integers(0, 200, (8, 12)).astype(dtype)
    out = isp.demosaic(m, "bggr", "ha")
    np.testing.assert_array_equal(out[0::2, 0::2, 2], m[0::2, 0::2])  # B sites keep B
    np.testing.assert_array_equal(out[0::2, 1::2, 1], m[0::2, 1::2])  # G sites keep G


def test_bilinear_matches_opencv_inside_the_border():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    for dtype in (np.uint8, np.uint16):
        m = rng.integers(0, int(np.iinfo(dtype).max) + 1, (40, 70)).astype(dtype)
        # OpenCV names Bayer codes after the second row's pattern: RGGB data is "BayerBG".
        ref = cv2.cvtColor(m, cv2.COLOR_BayerBG2RGB)
        np.testing.assert_array_equal(isp.demosaic(m, "rggb")[1:-1, 1:-1], ref[1:-1, 1:-1])


@pytest.mark.parametrize(
    "mosaic, kwargs, exc, words",
    [
        (np.zeros((4, 4), np.float32), {}, TypeError, "mosaic: expected uint8 or uint16"),
        (np.zeros((4, 4), np.int32), {}, TypeError, "mosaic: expected uint8 or uint16"),
        (np.zeros(4, np.uint8), {}, ValueError, r"mosaic: expected \[H, W\]"),
        (np.zeros((1, 4), np.uint8), {}, ValueError, "mosaic: 1x4 is too small"),
        (np.zeros((4, 4), np.uint8), {"pattern": "rgbg"}, ValueError, "pattern: expected one of"),
        (np.zeros((4, 4), np.uint8), {"method": "ahd"}, ValueError, "method: expected one of"),
        (np.zeros((4, 4), np.uint8), {"out_dtype": "uint16"}, ValueError, "out_dtype: expected one of uint8, float32"),
        (np.zeros((4, 4), np.uint8), {"threads": 0}, ValueError, "threads:"),
    ],
)
def test_bad_input_names_the_argument(mosaic, kwargs, exc, words):
    args = {"pattern": "rggb", **kwargs}
    with pytest.raises(exc, match=words):
        isp.demosaic(mosaic, **args)


def test_develop_with_nothing_but_bilinear_is_the_integer_demosaic():
    rng = np.random.default_rng(2)
    m = rng.integers(0, 65536, (2, 12, 17)).astype(np.uint16)
    plain = dict(wb="none", gamma="linear", tone="none", out_dtype="uint16")
    got = isp.develop(m, isp.RawMeta("gbrg"), "bilinear", **plain)
    np.testing.assert_array_equal(got, np.stack([demosaic_reference(x, "gbrg", "bilinear") for x in m]))
    np.testing.assert_array_equal(got, isp.demosaic(m, "gbrg"))
    # Any other stage keeps the float pipeline: within one step of the exact means.
    floated = isp.develop(m, isp.RawMeta("gbrg", white_level=65534), "bilinear", **plain)
    assert np.abs(floated.astype(int) - got).max() <= 2
