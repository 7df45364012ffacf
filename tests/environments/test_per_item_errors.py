"""One unusable image (too small, wrong channels, wrong dtype) is a per-item error in every environment kind.

Regression: ``device:NAME`` raised for the whole batch when one image was under
2x2, and every kind raised for a list item with two channels, so ``simulate
--device`` and ``characterize --experiment devices`` wrote nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

from instab.environments import parse

KINDS = [
    "device:phone-mid",
    "device:phone-heif,shot=1",
    "isp:instab-malvar",
    "isp:libraw-linear",
    "jpeg:q=80",
    "png",
    "webp:q=80",
    "heif:q=50",
    "avif:q=60",
    "brightness:delta=0.1",
    "noise:gaussian,sigma=0.05",
    "distort:phone",
    "brightness:delta=0.1+jpeg:q=80",
    "device:phone-mid+noise:gaussian,sigma=0.05",
    "jpeg:q=80+device:phone-budget",
]

# (image, what the error must mention); "too small" only for kinds that build a Bayer mosaic.
BAD = {
    "two channels": (np.zeros((8, 8, 2), np.uint8), "(8, 8, 2)"),
    "no channel axis": (np.zeros((8, 8), np.uint8), "(8, 8)"),
    "float pixels": (np.zeros((8, 8, 3), np.float32), "float32"),
    "missing": (None, "no input image"),
    "ragged list": ([[1, 2], [3]], "not an image array"),
}
TINY = [np.zeros((1, 1, 3), np.uint8), np.zeros((1, 7, 3), np.uint8), np.zeros((0, 0, 3), np.uint8)]


def _good(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)


@pytest.mark.parametrize("text", KINDS)
@pytest.mark.parametrize("bad", list(BAD))
def test_a_bad_list_item_is_reported_and_the_rest_go_on(text, bad):
    env = parse(text)
    image, mention = BAD[bad]
    good = [_good(0), _good(1)]
    out = env.apply([good[0], image, good[1]], seed=3)
    assert out.errors[0] is None and out.errors[2] is None
    assert out.errors[1] and mention in out.errors[1]
    assert out.images[1] is None
    # The good items are exactly what they are alone (randomness is keyed by position).
    alone = env.apply([good[0], None, good[1]], seed=3)
    np.testing.assert_array_equal(out.images[0], alone.images[0])
    np.testing.assert_array_equal(out.images[2], alone.images[2])
    if out.sizes is not None:
        assert out.sizes[1] == -1 and out.sizes[0] > 0


@pytest.mark.parametrize("text", [k for k in KINDS if "device:" in k or k.startswith("isp:")])
def test_an_image_too_small_for_the_mosaic_is_reported_not_raised(text):
    env = parse(text)
    good = _good(2)
    for tiny in TINY:
        out = env.apply([good, tiny], seed=0)
        assert out.errors[0] is None, out.errors
        assert out.images[0] is not None and out.images[0].shape == good.shape
        assert out.images[1] is None
        # The first step that cannot take it says why (a codec refuses an empty image first).
        assert "too small" in out.errors[1] or "empty image" in out.errors[1], out.errors[1]


def test_device_batch_of_tiny_images_gives_per_item_errors():
    env = parse("device:phone-vivid")
    out = env.apply(np.zeros((3, 1, 1, 3), np.uint8), seed=0)
    assert out.images.shape == (3, 1, 1, 3) and not out.images.any()
    assert list(out.sizes) == [-1, -1, -1]
    assert all("device:phone-vivid" in e and "too small" in e for e in out.errors)


def test_a_batch_of_the_wrong_form_still_raises():
    # A batch array is one input, not items: a wrong shape or dtype is the caller's error.
    env = parse("device:phone-mid")
    with pytest.raises(ValueError, match="C in"):
        env.apply(np.zeros((2, 8, 8, 2), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        env.apply(np.zeros((2, 8, 8, 3), np.float32))
