"""instab.capture.locate (find the markers, fit the homography, rectify the crop) on a 12-megapixel phone photo,
on one core, beside OpenCV's own ArUco marker detection alone on the same photo.

Both must find the same four markers (ids and, to a pixel, corners), computed untimed in the same test.
Full size: a 4000x3000 JPEG-decoded photo of a display frame, 20 degrees off-axis; under
--benchmark-disable (CI's correctness mode) the same at 1600x1200.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from instab._shared.decode import decode
from instab.capture import layout, locate, marker_ids, render_display
from tests._support.phone import jpeg, photograph, pose_homography

IMAGE_ID = 1234


@pytest.fixture(scope="module")
def photo(request, samples_dir):
    full = not request.config.getoption("benchmark_disable")
    size = (4000, 3000) if full else (1600, 1200)
    image = decode(samples_dir / "n01440764_tench.JPEG")
    frame = render_display(image, IMAGE_ID)
    h = pose_homography((1920, 1080), size, yaw=20, pitch=8, roll=3, fill=0.85)
    return decode(jpeg(photograph(frame, h, size, blur=1.0, noise=2, seed=1), 92)), (image.shape[1], image.shape[0])


@pytest.fixture
def one_core():
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(before)


def opencv_detect(photo: np.ndarray) -> dict[int, np.ndarray]:
    """OpenCV alone: grey conversion and ArUco detection (sub-pixel corners) at full resolution."""
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_5X5_1000), params)
    corners, ids, _ = detector.detectMarkers(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY))
    return {int(i): c.reshape(4, 2) for i, c in zip(ids.ravel(), corners, strict=True)}


def _locate_corners(found, image_size) -> dict[int, np.ndarray]:
    """The marker corners locate's homography puts in the photo."""
    back = np.linalg.inv(found.homography)
    lay = layout(image_size)
    ids = marker_ids(found.image_id)
    return {ids[c]: cv2.perspectiveTransform(lay.markers[c].reshape(-1, 1, 2), back).reshape(4, 2)
            for c in range(4)}


@pytest.mark.benchmark(group="capture-locate-12mp")
def test_locate(benchmark, photo, one_core):
    pixels, image_size = photo
    found = benchmark(locate, pixels, image_size=image_size)
    assert found.image_id == IMAGE_ID and found.markers == 4
    theirs = opencv_detect(pixels)
    ours = _locate_corners(found, image_size)
    assert sorted(theirs) == sorted(ours)
    assert max(np.abs(theirs[i] - ours[i]).max() for i in theirs) < 1.5


@pytest.mark.benchmark(group="capture-locate-12mp")
def test_opencv_detection_alone(benchmark, photo, one_core):
    pixels, image_size = photo
    theirs = benchmark(opencv_detect, pixels)
    ours = _locate_corners(locate(pixels, image_size=image_size), image_size)
    assert sorted(theirs) == sorted(marker_ids(IMAGE_ID)) == sorted(ours)
    assert max(np.abs(theirs[i] - ours[i]).max() for i in theirs) < 1.5
