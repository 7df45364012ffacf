"""The devices' unsharp mask in C++: bit-identical to the numpy reference (issue 19)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instab.environments import devices
from tests.reference import unsharp_reference


@st.composite
def images(draw):
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 13))
    c = draw(st.sampled_from([1, 3, 4]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    kind = draw(st.sampled_from(["uniform", "extremes", "smooth"]))
    if kind == "uniform":
        im = rng.integers(0, 256, (h, w, c))
    elif kind == "extremes":
        im = rng.choice([0, 1, 254, 255], (h, w, c))
    else:  # small steps: many values land on exact halves before rounding
        im = 100 + np.cumsum(rng.integers(-2, 3, (h, w, c)), axis=1)
    return im.astype(np.uint8)


# Amounts that are not exact in float32 as well as ones that are, and the built-in devices'.
AMOUNTS = st.one_of(st.sampled_from([0.0, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 2.5]), st.floats(0, 4, width=32))


@settings(max_examples=200, deadline=None)
@given(images(), AMOUNTS, st.integers(1, 3))
def test_matches_reference(image, amount, threads):
    np.testing.assert_array_equal(devices.unsharp(image, amount, threads=threads), unsharp_reference(image, amount))


def test_batch_equals_one_at_a_time_for_any_threads():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, 17, 23, 3)).astype(np.uint8)
    one = np.stack([unsharp_reference(im, 0.7) for im in batch])
    for t in (1, 2, 4):
        np.testing.assert_array_equal(devices.unsharp(batch, 0.7, threads=t), one)


@pytest.mark.parametrize(
    "image, amount, exc, words",
    [
        (np.zeros((4, 4, 3), np.float32), 0.5, ValueError, "image: expected uint8"),
        (np.zeros((4, 4), np.uint8), 0.5, ValueError, "image: expected uint8"),
        (np.zeros((4, 4, 3), np.uint8), float("nan"), ValueError, "amount: must be finite"),
        (np.zeros((0, 4, 3), np.uint8), 0.5, ValueError, "images: empty image"),
    ],
)
def test_bad_input_names_the_argument(image, amount, exc, words):
    with pytest.raises(exc, match=words):
        devices.unsharp(image, amount)
