"""Find a display frame in a photo: which image it shows, the homography, and the rectified image.

Detection runs on a copy shrunk by an integer factor to at most ``DETECT_LONG_SIDE`` pixels
(bounded cost on a 12 MP photo); the marker corners are then re-found on the full-resolution
photo from the markers' edges, and the crop is resampled from the image's region shrunk to
about the frame's scale (no aliasing when the photo is much finer than the displayed image).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from instab.capture.markers import (
    DEFAULT_SIZE,
    DETECT_LONG_SIDE,
    DIGIT_CORNERS,
    MARKER_CELLS,
    MAX_EDGE_WIDTH,
    MIN_MARKERS,
    Layout,
    Located,
    as_image,
    layout,
)


def _detect(gray: np.ndarray) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """Markers of the dictionary in ``gray``: corner -> its [4, 2] points, corner -> digit."""
    # cv2 is the optional [capture] dependency (opencv-python-headless): loaded on first use
    import cv2

    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_5X5_1000), params)
    corners, ids, _ = detector.detectMarkers(gray)
    found: dict[int, np.ndarray] = {}
    digits: dict[int, int] = {}
    for points, marker_id in zip(corners, [] if ids is None else ids.ravel(), strict=True):
        corner, digit = divmod(int(marker_id), 250)
        if corner in found:
            raise ValueError(f"found two markers for the same corner ({_CORNER_NAMES[corner]}): "
                             "the photo must show exactly one display frame")
        found[corner] = np.asarray(points, dtype=np.float64).reshape(4, 2)
        digits[corner] = digit
    return found, digits


_CORNER_NAMES = ("top-left", "top-right", "bottom-right", "bottom-left")
# How far (photo pixels) the image's corners may move between the detector's corners and the edge-fitted ones.
# Beyond it the homography is unreliable: seen with three markers, a steep angle and blur (the sweep in
# tests/capture/test_locate.py); with four markers in view the two agree to about a pixel.
MAX_PASS_SHIFT = 2.5


def _image_id(digits: dict[int, int]) -> int:
    value = []
    for corners in DIGIT_CORNERS:
        seen = {digits[c] for c in corners if c in digits}
        if len(seen) != 1:
            raise ValueError("the markers disagree about which image is shown (or too few were found): "
                             "is this a frame of instab's display page?")
        value.append(seen.pop())
    return value[0] + 250 * value[1]


def _edges(gray: np.ndarray, to_frame: np.ndarray, lay: Layout,
           found: dict[int, np.ndarray]) -> tuple[dict[int, np.ndarray], float]:
    """Refined marker corners (photo pixels) from the markers' outer edges, and the edges' median 10-90 % width.

    Profiles across each outer edge (white quiet zone -> black border) are sampled from the photo along lines
    placed with ``to_frame``. Each line's 50 % crossing is a point on the edge that blur does not move (the
    detector's corners shrink towards the marker's centre as blur grows); a line fitted through them per
    edge, intersected with its neighbours, gives the corners. The width, in photo pixels, is about 1-2 for a
    sharp photo and grows with defocus or motion blur.
    """
    # cv2 is the optional [capture] dependency (opencv-python-headless): loaded on first use
    import cv2

    to_photo = np.linalg.inv(to_frame)
    side = float(lay.marker_side)
    offsets = np.arange(-0.9, 0.9, 0.25 / (side / MARKER_CELLS)) * (side / MARKER_CELLS)  # outside -> inside
    along = np.linspace(0.15, 0.85, 24) * side  # away from the corners
    flat = np.zeros_like(along)
    refined: dict[int, np.ndarray] = {}
    widths = []
    for corner, detected in found.items():
        x0, y0 = lay.markers[corner][0]
        # top, right, bottom, left: points on the edge and the normal pointing into the marker
        edges = (((x0 + along, y0 + flat), (0, 1)), ((x0 + side + flat, y0 + along), (-1, 0)),
                 ((x0 + along, y0 + side + flat), (0, -1)), ((x0 + flat, y0 + along), (1, 0)))
        lines = []
        for (ex, ey), (nx, ny) in edges:
            grid = np.stack([ex[:, None] + nx * offsets, ey[:, None] + ny * offsets], axis=-1)
            pts = cv2.perspectiveTransform(grid.reshape(-1, 1, 2), to_photo).reshape(grid.shape)
            maps = pts.astype(np.float32)
            samples = cv2.remap(gray, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR).astype(np.float64)
            step = float(np.median(np.linalg.norm(np.diff(pts, axis=1), axis=2)))  # photo pixels per sample
            widths.append(rise(samples.mean(0)) * step)
            lines.append(_edge_line(samples, pts))
        fitted = [line for line in lines if line is not None]
        if len(fitted) == 4:
            # corner k of the marker (clockwise from top-left) lies on edges k-1 and k
            refined[corner] = np.array([_intersect(fitted[k - 1], fitted[k]) for k in range(4)])
        else:
            refined[corner] = detected
    return refined, float(np.median(widths))


def _edge_line(samples: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(a point, a unit direction) of the line through each profile's 50 % crossing; None if too few cross."""
    n = max(2, samples.shape[1] // 5)
    mean = samples.mean(0)
    white, black = float(np.median(mean[:n])), float(np.median(mean[-n:]))
    if white - black < 10:
        return None
    level = (samples - black) / (white - black) - 0.5
    crossings = []
    for i in range(samples.shape[0]):
        below = np.flatnonzero(level[i] < 0)
        j = int(below[0]) if below.size else 0
        if j == 0:
            continue  # no crossing on this line: something covers the edge here
        t = level[i, j - 1] / (level[i, j - 1] - level[i, j])
        crossings.append(pts[i, j - 1] + t * (pts[i, j] - pts[i, j - 1]))
    if len(crossings) < 8:
        return None
    on_edge = np.array(crossings)
    centre = on_edge.mean(0)
    direction = np.linalg.svd(on_edge - centre)[2][0]
    return centre, direction


def _intersect(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    (p, d), (q, e) = a, b
    t = np.linalg.solve(np.array([d, -e]).T, q - p)
    return p + t[0] * d


def rise(profile: np.ndarray) -> float:
    """Samples between the 90 % and 10 % crossings of a falling edge (white, then black); inf without an edge."""
    n = max(2, len(profile) // 5)
    white, black = float(np.median(profile[:n])), float(np.median(profile[-n:]))
    if white - black < 10:  # no contrast: no edge there (glare, a finger, a dark photo)
        return float("inf")
    level = (profile - black) / (white - black)
    hi = int(np.argmax(level < 0.9))  # first sample under 90 %
    lo = int(np.argmax(level < 0.1))  # first sample under 10 %
    x90 = hi - 1 + (level[hi - 1] - 0.9) / (level[hi - 1] - level[hi]) if hi > 0 else 0.0
    x10 = lo - 1 + (level[lo - 1] - 0.1) / (level[lo - 1] - level[lo]) if lo > 0 else 0.0
    return float(max(0.0, x10 - x90))


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    # cv2 is the optional [capture] dependency (opencv-python-headless): loaded on first use
    import cv2

    to_frame, _ = cv2.findHomography(src, dst, 0)
    if to_frame is None or not np.all(np.isfinite(to_frame)):
        raise ValueError("the markers found do not define a homography (degenerate view)")
    return np.asarray(to_frame, dtype=np.float64)


def _disagreement(a: np.ndarray, b: np.ndarray, rect: tuple[int, int, int, int]) -> float:
    """Largest distance (frame pixels) between where two photo -> frame maps put the image's corners."""
    # cv2 is the optional [capture] dependency (opencv-python-headless): loaded on first use
    import cv2

    x, y, w, h = rect
    pts = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64).reshape(-1, 1, 2)
    moved = cv2.perspectiveTransform(cv2.perspectiveTransform(pts, np.linalg.inv(a)), b)
    return float(np.abs(moved - pts).max())


def photo_per_frame(to_frame: np.ndarray, rect: tuple[int, int, int, int]) -> float:
    """Photo pixels per frame pixel over ``rect``: the square root of its area in the photo over that in the frame."""
    # cv2 is the optional [capture] dependency (opencv-python-headless): loaded on first use
    import cv2

    x, y, w, h = rect
    pts = np.array([[[x, y]], [[x + w, y]], [[x + w, y + h]], [[x, y + h]]], np.float64)
    seen = cv2.perspectiveTransform(pts, np.linalg.inv(to_frame)).astype(np.float32)
    return math.sqrt(abs(cv2.contourArea(seen)) / (w * h))


def shrink(image: np.ndarray, k: int) -> np.ndarray:
    """``image`` averaged over ``k`` x ``k`` blocks (OpenCV's fast integer-factor area resize; the last
    ``shape % k`` rows and columns are dropped). Pixel ``p`` of the result is centred on ``(p + 0.5) * k - 0.5``."""
    # cv2 is the optional [capture] dependency (opencv-python-headless): loaded on first use
    import cv2

    h, w = image.shape[0] // k, image.shape[1] // k
    return image if k == 1 else cv2.resize(image[:h * k, :w * k], (w, h), interpolation=cv2.INTER_AREA)


def _crop(rgb: np.ndarray, to_frame: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """The frame's ``rect`` rectified out of ``rgb``; where the photo is 2x or more finer than the frame, its
    region is first shrunk by that integer factor (no aliasing, and a 12 MP photo costs little)."""
    # cv2 is the optional [capture] dependency (opencv-python-headless): loaded on first use
    import cv2

    x, y, w, h = rect
    to_rect = np.array([[1.0, 0, -x], [0, 1.0, -y], [0, 0, 1.0]]) @ to_frame
    corners = cv2.perspectiveTransform(np.array([[[0, 0]], [[w, 0]], [[w, h]], [[0, h]]], np.float64),
                                       np.linalg.inv(to_rect))
    k = int(photo_per_frame(to_frame, rect))
    if k >= 2:
        x0, y0 = (max(0, int(v) // k * k - 2 * k) for v in corners.reshape(-1, 2).min(0))
        x1, y1 = (int(v) + 2 * k for v in corners.reshape(-1, 2).max(0))
        region = shrink(rgb[y0:y1, x0:x1], k)
        # region pixel q sits at photo pixel (q + 0.5) * k - 0.5 + offset
        to_photo = np.array([[k, 0, 0.5 * k - 0.5 + x0], [0, k, 0.5 * k - 0.5 + y0], [0, 0, 1.0]])
        to_rect, rgb = to_rect @ to_photo, region
    return cv2.warpPerspective(rgb, to_rect, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def locate(photo: Any, *, image_size: tuple[int, int] | Callable[[int], tuple[int, int]] | None = None,
           size: tuple[int, int] = DEFAULT_SIZE) -> Located:
    """Find the display frame in ``photo``: the image id its markers carry, the homography, the rectified crop.

    Parameters
    ----------
    photo : array, path or bytes
        The photo (uint8 ``[H, W]``/``[H, W, 3]``/``[H, W, 4]``, a file path or encoded bytes).
        EXIF orientation need not be applied: the markers say which corner is which.
    image_size : (int, int) or callable, optional
        ``(w, h)`` of the original image shown, so that the crop is exactly the image as
        displayed, or a function of the image id found that returns it (and raises
        ``ValueError`` for an id it does not know); None crops the whole image area
        between the markers.
    size : (int, int)
        The frame size :func:`render_display` used.

    Returns
    -------
    Located

    Raises
    ------
    ValueError
        Saying what was not found: no markers, too few of them, markers that disagree, or
        markers that cannot place the image to within a few pixels.
    """
    # cv2 is the optional [capture] dependency (opencv-python-headless): loaded on first use
    import cv2

    rgb = as_image(photo, what="photo")
    if min(rgb.shape[:2]) < 64:
        raise ValueError(f"photo: {rgb.shape[1]}x{rgb.shape[0]} pixels is too small to find the markers in")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    k = max(1, max(gray.shape) // DETECT_LONG_SIDE)  # an integer factor: to between 1 and 2 times the limit
    found, digits = _detect(shrink(gray, k))
    if not found:
        raise ValueError("no markers found: the photo must show the display frame with its four corner markers")
    if len(found) < MIN_MARKERS:
        missing = ", ".join(_CORNER_NAMES[c] for c in range(4) if c not in found)
        raise ValueError(f"found only {len(found)} of the 4 corner markers (need {MIN_MARKERS}; "
                         f"not found: {missing}): the whole frame must be in the photo")
    image_id = _image_id(digits)
    lay = layout(image_size(image_id) if callable(image_size) else image_size, size)
    # corners from the reduced copy, in full-resolution pixels (refining them there on blurred edges drifts)
    src = np.concatenate([(found[c] + 0.5) * k - 0.5 for c in sorted(found)])
    dst = np.concatenate([lay.markers[c] for c in sorted(found)])
    first = _homography(src, dst)
    # second pass: corners from the markers' edges, unbiased by blur
    corners, blur = _edges(gray, first, lay, {c: src[4 * k:4 * k + 4] for k, c in enumerate(sorted(found))})
    src = np.concatenate([corners[c] for c in sorted(found)])
    to_frame = _homography(src, dst)
    shift = _disagreement(first, to_frame, lay.image_rect) * photo_per_frame(to_frame, lay.image_rect)
    if shift > MAX_PASS_SHIFT:
        why = "too blurred" if blur > MAX_EDGE_WIDTH else "cannot place the image reliably"
        raise ValueError(f"{why}: the markers' corners and edges disagree by {shift:.1f} photo pixels "
                         f"({len(found)} markers, edges {blur:.1f} px wide): take the photo sharper, less "
                         "obliquely, with all four markers in view")
    projected = cv2.perspectiveTransform(src.reshape(-1, 1, 2), to_frame).reshape(-1, 2)
    error = float(np.sqrt(np.mean(np.sum((projected - dst) ** 2, axis=1))))
    crop = _crop(rgb, to_frame, lay.image_rect)
    return Located(image_id, to_frame, crop, len(found), blur, error)


__all__ = [
    "MAX_PASS_SHIFT",
    "locate",
    "photo_per_frame",
    "rise",
    "shrink",
]
