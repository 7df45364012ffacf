"""The display frame: layout, marker ids, and render_display drawing exactly what the layout says."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from instab.capture import DEFAULT_SIZE, layout, marker_ids, render_display
from instab.capture.markers import BACKGROUND, MAX_IMAGES, MIN_MARKERS, as_image

sizes = st.tuples(st.integers(240, 4000), st.integers(240, 4000)).filter(lambda s: 0.4 < s[0] / s[1] < 4)
image_sizes = st.tuples(st.integers(1, 5000), st.integers(1, 5000))


@given(st.integers(0, MAX_IMAGES - 1))
def test_marker_ids_round_trip(image_id):
    ids = marker_ids(image_id)
    assert all(0 <= i < 1000 for i in ids) and [i // 250 for i in ids] == [0, 1, 2, 3]
    lo, hi = ids[0] % 250, ids[1] % 250
    assert ids[2] % 250 == lo and ids[3] % 250 == hi and lo + 250 * hi == image_id
    # any three markers carry both digits: MIN_MARKERS = 3 is enough to read the id
    assert MIN_MARKERS == 3


@pytest.mark.parametrize("bad", [-1, MAX_IMAGES, 1.0, True, "3", None])
def test_marker_ids_reject(bad):
    with pytest.raises(ValueError, match="image_id"):
        marker_ids(bad)


@settings(max_examples=60, deadline=None)
@given(sizes, st.one_of(st.none(), image_sizes))
def test_layout_fits(size, image_size):
    lay = layout(image_size, size)
    w, h = size
    x, y, dw, dh = lay.image_rect
    assert 0 <= x and 0 <= y and x + dw <= w and y + dh <= h and dw >= 1 and dh >= 1
    for c, corners in enumerate(lay.markers):
        x0, y0 = corners.min(0) + 0.5
        x1, y1 = corners.max(0) + 0.5
        assert x1 - x0 == lay.marker_side == y1 - y0 and lay.marker_side % 7 == 0
        assert 0 < x0 and x1 < w and 0 < y0 and y1 < h
        # no marker overlaps the image
        assert x1 <= x or x0 >= x + dw, (c, corners, lay.image_rect)
    if image_size is not None:
        # aspect kept to within one pixel of rounding, and one side fills the image area
        assert abs(dw / dh - image_size[0] / image_size[1]) <= max(1 / dh, dw / dh**2) * 1.01 + 1e-9
        area = layout(None, size).image_rect
        assert dw == area[2] or dh == area[3]


@pytest.mark.parametrize("size", [(239, 600), (600, 100), (20000, 1000), ("a", 3), (100,)])
def test_layout_rejects_sizes(size):
    with pytest.raises(ValueError, match="size"):
        layout(None, size)


def test_render_display_draws_the_layout(samples_dir):
    image = np.asarray(Image.open(samples_dir / "n01440764_tench.JPEG").convert("RGB"))
    frame = render_display(image, 4321)
    assert frame.shape == (DEFAULT_SIZE[1], DEFAULT_SIZE[0], 3) and frame.dtype == np.uint8
    lay = layout((image.shape[1], image.shape[0]))
    x, y, w, h = lay.image_rect
    expected = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS))
    assert np.array_equal(frame[y:y + h, x:x + w], expected)
    assert np.all(frame[y:y + h, x - 1] == BACKGROUND)  # neutral grey beside the image
    # OpenCV finds the four markers exactly where the layout says, with the ids of image 4321
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_5X5_1000), params)
    corners, ids, _ = detector.detectMarkers(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    found = {int(i): c.reshape(4, 2) for i, c in zip(ids.ravel(), corners, strict=True)}
    assert sorted(found) == sorted(marker_ids(4321))
    for c, marker_id in enumerate(marker_ids(4321)):
        assert np.abs(found[marker_id] - lay.markers[c]).max() < 0.6  # sub-pixel corners of an ideal step


def test_render_display_accepts_paths_bytes_gray_and_rgba(samples_dir, tmp_path):
    path = samples_dir / "n01440764_tench.JPEG"
    from_path = render_display(path, 0, size=(640, 360))
    assert np.array_equal(from_path, render_display(path.read_bytes(), 0, size=(640, 360)))
    gray = np.full((40, 30), 77, np.uint8)
    rgba = np.dstack([np.full((40, 30, 3), 77, np.uint8), np.zeros((40, 30), np.uint8)])
    assert np.array_equal(render_display(gray, 3, size=(640, 360)), render_display(rgba, 3, size=(640, 360)))


@pytest.mark.parametrize("image, error", [
    (np.zeros((4, 4, 3), np.float32), TypeError),
    (np.zeros((4, 4, 2), np.uint8), ValueError),
    (b"not an image", Exception),
])
def test_render_display_rejects_bad_images(image, error):
    with pytest.raises(error):
        render_display(image, 0)


def test_as_image_names_the_argument():
    with pytest.raises(TypeError, match="^photo: "):
        as_image(np.zeros((3, 3)), what="photo")
