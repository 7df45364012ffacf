"""The display frame and its inverse: an image framed by four ArUco markers, and finding it in a photo.

Frame layout (``size=(W, H)``, in frame pixels): a white square in each corner holds one
ArUco marker (OpenCV's 5x5 dictionary of 1000) with a two-cell quiet zone; the image is
scaled to fit, aspect kept, in the area between the markers' columns, on neutral grey.

The markers say which corner they are and which image is shown: marker id =
``corner * 250 + digit``, where the top-left and bottom-right markers carry
``image_id % 250`` and the top-right and bottom-left ones ``image_id // 250``. Any three
markers therefore give both digits and twelve points for the homography, so one
marker may be hidden (glare, a finger) and up to 62,500 images can be told apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from instab._shared.decode import as_rgb_array, decode

DEFAULT_SIZE = (1920, 1080)
MAX_IMAGES = 250 * 250
BACKGROUND = 128  # neutral grey around the image
MARKER_CELLS = 7  # 5x5 bits plus a one-cell black border
DIGIT_CORNERS = ((0, 2), (1, 3))  # (corners carrying image_id % 250, corners carrying image_id // 250)
# Detection runs on a copy of at most this long side (a 12 MP photo is 4000 px); corners are then refined
# on the full-resolution photo, so accuracy is kept while the detector's cost stays bounded.
DETECT_LONG_SIDE = 1600
MIN_MARKERS = 3
# The markers' edges, 10-90 % wide, over which a photo is "too blurred" (in photo pixels; a sharp photo
# measures 1-2, a Gaussian blur of sigma s adds about 2.56 s): see the blur sweep in tests/capture.
MAX_EDGE_WIDTH = 8.0


@dataclass(frozen=True)
class Layout:
    """Where things are in a display frame of ``size`` (all in frame pixels, ``(x, y)`` order).

    ``markers[c]`` is the ``[4, 2]`` corner array of the marker in corner ``c`` (0 top-left,
    1 top-right, 2 bottom-right, 3 bottom-left), corners clockwise from its top-left as
    OpenCV reports them; ``image_rect`` is ``(x, y, width, height)`` of the displayed image.
    """

    size: tuple[int, int]
    marker_side: int
    markers: tuple[np.ndarray, ...]
    image_rect: tuple[int, int, int, int]


@dataclass(frozen=True)
class Located:
    """What :func:`locate` found: the image shown, where the frame is in the photo, and the rectified crop.

    ``homography`` maps photo pixels to frame pixels (3x3, float64); ``crop`` is the image
    region of the frame, rectified to its displayed size (uint8 ``[h, w, 3]``); ``markers``
    how many of the four markers were found; ``edge_width`` the median 10-90 % width of
    the markers' outer edges in photo pixels (about 1-2 when sharp; over
    :data:`MAX_EDGE_WIDTH` = too blurred); ``reprojection_error`` the RMS distance
    (frame pixels) between the markers' corners and where the homography puts them.
    """

    image_id: int
    homography: np.ndarray
    crop: np.ndarray
    markers: int
    edge_width: float
    reprojection_error: float


def _check_size(size: Any) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size: expected (width, height), got {size!r}") from None
    if min(w, h) < 240 or max(w, h) > 16384:
        raise ValueError(f"size: width and height must be 240..16384 pixels, got {(w, h)}")
    return w, h


def layout(image_size: tuple[int, int] | None = None, size: tuple[int, int] = DEFAULT_SIZE) -> Layout:
    """The frame layout for an image of ``image_size`` (``(w, h)``; None: the whole image area).

    Parameters
    ----------
    image_size : (int, int), optional
        Width and height of the image to show; it is scaled to fit the area between the
        marker columns, aspect kept. None gives that whole area.
    size : (int, int)
        Width and height of the frame.
    """
    w, h = _check_size(size)
    side = MARKER_CELLS * max(4, round(0.14 * min(w, h) / MARKER_CELLS))
    quiet = 2 * side // MARKER_CELLS
    box = side + 2 * quiet
    origins = ((quiet, quiet), (w - box + quiet, quiet), (w - box + quiet, h - box + quiet), (quiet, h - box + quiet))
    square = np.array([[0, 0], [side, 0], [side, side], [0, side]], dtype=np.float64)
    # -0.5: OpenCV puts pixel centres at integers, so a marker's outer edge lies half a pixel before its first pixel
    markers = tuple(square + np.array(o, dtype=np.float64) - 0.5 for o in origins)
    # the image area: between the marker columns, a quiet zone from every edge
    ax, ay, aw, ah = box + quiet, quiet, w - 2 * (box + quiet), h - 2 * quiet
    if aw < 16 or ah < 16:
        raise ValueError(f"size: {(w, h)} leaves no room for the image between the markers")
    if image_size is None:
        return Layout((w, h), side, markers, (ax, ay, aw, ah))
    iw, ih = (int(v) for v in image_size)
    if iw < 1 or ih < 1:
        raise ValueError(f"image_size: expected a positive (width, height), got {image_size!r}")
    scale = min(aw / iw, ah / ih)
    dw, dh = max(1, round(iw * scale)), max(1, round(ih * scale))
    return Layout((w, h), side, markers, (ax + (aw - dw) // 2, ay + (ah - dh) // 2, dw, dh))


def marker_ids(image_id: int) -> tuple[int, int, int, int]:
    """The ArUco ids of the four corner markers (top-left, top-right, bottom-right, bottom-left) of ``image_id``."""
    if isinstance(image_id, bool) or not isinstance(image_id, (int, np.integer)) or not 0 <= image_id < MAX_IMAGES:
        raise ValueError(f"image_id: expected an integer 0..{MAX_IMAGES - 1}, got {image_id!r}")
    digits = (int(image_id) % 250, int(image_id) // 250)
    ids = [0, 0, 0, 0]
    for digit, corners in zip(digits, DIGIT_CORNERS, strict=True):
        for c in corners:
            ids[c] = c * 250 + digit
    return (ids[0], ids[1], ids[2], ids[3])


def _dictionary() -> Any:
    # cv2 is the optional [capture] dependency (opencv-python-headless): loaded on first use
    import cv2

    return cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_5X5_1000)


def marker_pattern(marker_id: int, side: int) -> np.ndarray:
    """The ArUco marker ``marker_id`` as a uint8 ``[side, side]`` image (0 black, 255 white), cells side/7 wide."""
    # cv2 is the optional [capture] dependency (opencv-python-headless): loaded on first use
    import cv2

    cells = cv2.aruco.generateImageMarker(_dictionary(), marker_id, MARKER_CELLS)
    return np.repeat(np.repeat(cells, side // MARKER_CELLS, axis=0), side // MARKER_CELLS, axis=1)


def as_image(image: Any, what: str = "image") -> np.ndarray:
    """``image`` (an array, a file path or encoded bytes) as a uint8 ``[H, W, 3]`` array; errors name ``what``."""
    if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
        return decode(bytes(image) if isinstance(image, (bytearray, memoryview)) else image)
    try:
        return as_rgb_array(np.asarray(image))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what}: {exc}") from None


def render_display(image: Any, image_id: int, size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """The display frame of ``image`` exactly as ``GET /display`` shows it: uint8 ``[H, W, 3]``.

    Parameters
    ----------
    image : array, path or bytes
        The image (uint8 ``[h, w]``/``[h, w, 3]``/``[h, w, 4]``, a file path or encoded bytes).
    image_id : int
        Its 0-based position in the session's labels CSV, encoded in the markers.
    size : (int, int)
        Width and height of the frame (the display page scales it to the screen).

    Examples
    --------
    >>> import numpy as np
    >>> frame = render_display(np.zeros((30, 40, 3), np.uint8), 7, size=(640, 360))
    >>> frame.shape
    (360, 640, 3)
    """
    ids = marker_ids(image_id)
    pixels = as_image(image)
    lay = layout((pixels.shape[1], pixels.shape[0]), size)
    w, h = lay.size
    frame = np.full((h, w, 3), BACKGROUND, dtype=np.uint8)
    quiet = 2 * lay.marker_side // MARKER_CELLS
    for corners, marker_id in zip(lay.markers, ids, strict=True):
        x0, y0 = (int(v + 0.5) for v in corners[0])
        frame[y0 - quiet:y0 + lay.marker_side + quiet, x0 - quiet:x0 + lay.marker_side + quiet] = 255
        frame[y0:y0 + lay.marker_side, x0:x0 + lay.marker_side] = marker_pattern(marker_id, lay.marker_side)[..., None]
    x, y, dw, dh = lay.image_rect
    shown = pixels if (dw, dh) == (pixels.shape[1], pixels.shape[0]) else np.asarray(
        Image.fromarray(pixels).resize((dw, dh), Image.Resampling.LANCZOS))
    frame[y:y + dh, x:x + dw] = shown
    return frame


__all__ = [
    "BACKGROUND",
    "DEFAULT_SIZE",
    "DETECT_LONG_SIDE",
    "DIGIT_CORNERS",
    "Layout",
    "Located",
    "MARKER_CELLS",
    "MAX_IMAGES",
    "MAX_EDGE_WIDTH",
    "MIN_MARKERS",
    "as_image",
    "layout",
    "marker_ids",
    "marker_pattern",
    "render_display",
]
