"""Colour known answers: flat patches through a hand-chosen camera matrix and white balance.

The camera -> linear sRGB matrix ``C`` below is not symmetric and its rows sum to one (white
stays white). The sensor's DNG-style matrix is built from it (``xyz_to_cam = inv(C) @
inv(SRGB_TO_XYZ)``), so ``RawMeta`` must derive ``cam_to_rgb == C`` and ``develop`` must give
``C @ (gains * camera)`` for every flat patch: the products are worked out by hand below. A
transposed matrix gives, e.g., 0.56875 instead of 0.375 for the first patch's red; using
``inv(C)`` (the matrix the wrong way round) gives other values again; swapped red/blue gains too.
"""

from __future__ import annotations

import numpy as np
import pytest

from instab import isp
from instab.isp.pipeline import SRGB_TO_XYZ

C = np.array([[1.5, -0.3, -0.2], [-0.1, 1.4, -0.3], [0.05, -0.45, 1.4]])
GAINS = (2.0, 1.0, 1.5)
BLACK, WHITE = 100, 4100  # a range of 4000: camera values below are exact raw integers

# (camera response before white balance, expected linear sRGB), each product done by hand:
# balanced = gains * camera; out = C @ balanced.
PATCHES = [
    # (0.4, 0.5, 0.375): 0.6 - 0.15 - 0.075; -0.04 + 0.7 - 0.1125; 0.02 - 0.225 + 0.525
    ((0.2, 0.5, 0.25), (0.375, 0.5475, 0.32)),
    # (0.6, 0.3, 0.45): 0.9 - 0.09 - 0.09; -0.06 + 0.42 - 0.135; 0.03 - 0.135 + 0.63
    ((0.3, 0.3, 0.3), (0.72, 0.225, 0.525)),
    # (0.5, 0.4, 0.3): 0.75 - 0.12 - 0.06; -0.05 + 0.56 - 0.09; 0.025 - 0.18 + 0.42
    ((0.25, 0.4, 0.2), (0.57, 0.42, 0.265)),
]
WIDTH = 12  # columns per patch (even: the Bayer phase continues across patches)
MARGIN = 3  # the widest demosaic support (Malvar 5x5, Hamilton-Adams) reaches 2-3 pixels


def sensor(pattern: str) -> isp.RawMeta:
    xyz_to_cam = np.linalg.inv(C) @ np.linalg.inv(SRGB_TO_XYZ)
    return isp.RawMeta(pattern, black_level=BLACK, white_level=WHITE, wb_gains=GAINS, xyz_to_cam=xyz_to_cam)


def mosaic_of_patches(pattern: str, height: int = 10) -> np.ndarray:
    """Patches side by side; each pixel holds its Bayer colour's camera value, in raw units."""
    out = np.zeros((height, WIDTH * len(PATCHES)), np.uint16)
    for j, (camera, _) in enumerate(PATCHES):
        for y in range(height):
            for x in range(WIDTH * j, WIDTH * (j + 1)):
                channel = "rgb".index(pattern[2 * (y % 2) + x % 2])  # the pattern names the 2x2 block row-major
                out[y, x] = round(BLACK + camera[channel] * (WHITE - BLACK))
    return out


def test_meta_derives_the_chosen_matrix():
    meta = sensor("rggb")
    np.testing.assert_allclose(meta.cam_to_rgb, C, atol=1e-12)
    np.testing.assert_allclose(meta.rgb_to_cam @ C, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("pattern", list(isp.PATTERNS))
@pytest.mark.parametrize("demosaic", list(isp.DEMOSAICS))
def test_flat_patches_develop_to_the_hand_computed_colours(pattern, demosaic):
    out = isp.develop(mosaic_of_patches(pattern), sensor(pattern), demosaic, gamma="linear", tone="none",
                      out_dtype="float32")
    for j, (_, want) in enumerate(PATCHES):
        inner = out[:, WIDTH * j + MARGIN : WIDTH * (j + 1) - MARGIN]
        # float32 arithmetic on exact inputs: a few ulp.
        np.testing.assert_allclose(inner, np.broadcast_to(want, inner.shape), atol=2e-6, err_msg=f"patch {j}")


def test_wb_none_and_explicit_gains():
    mosaic, meta = mosaic_of_patches("rggb"), sensor("rggb")
    camera, _ = PATCHES[1]  # (0.3, 0.3, 0.3): without gains C @ camera = 0.3 (rows sum to one)
    out = isp.develop(mosaic, meta, "bilinear", wb="none", gamma="linear", tone="none", out_dtype="float32")
    np.testing.assert_allclose(out[:, WIDTH + MARGIN : 2 * WIDTH - MARGIN], 0.3, atol=2e-6)
    same = isp.develop(mosaic, meta, "bilinear", wb=GAINS, gamma="linear", tone="none", out_dtype="float32")
    np.testing.assert_allclose(same[:, WIDTH + MARGIN : 2 * WIDTH - MARGIN], np.broadcast_to(PATCHES[1][1], (10, 6, 3)),
                               atol=2e-6)
