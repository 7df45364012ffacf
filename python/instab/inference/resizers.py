"""Resizer variants: the same resize plan and crop through different libraries' filters.

A classifier's preprocessing resizes every image; which library and filter does it is a
deployment choice that moves predictions (antialiased Pillow bilinear vs OpenCV's
``INTER_LINEAR``, which samples without antialiasing, is the classic mismatch). Each name in
:data:`RESIZERS` is one such resizer:

``pillow-bilinear``  instab's C++ path, Pillow's ``BILINEAR`` reproduced exactly (the default)
``pillow-bicubic``   ``PIL.Image.resize(..., Image.BICUBIC)`` (antialiased)
``pillow-lanczos``   ``PIL.Image.resize(..., Image.LANCZOS)`` (antialiased)
``pillow-box``       ``PIL.Image.resize(..., Image.BOX)`` (area average)
``opencv-linear``    ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)`` (no antialiasing)
``opencv-area``      ``cv2.resize(..., interpolation=cv2.INTER_AREA)``
``opencv-cubic``     ``cv2.resize(..., interpolation=cv2.INTER_CUBIC)`` (no antialiasing)
``opencv-nearest``   ``cv2.resize(..., interpolation=cv2.INTER_NEAREST)``
``nearest``          ``PIL.Image.resize(..., Image.NEAREST)``

Every resizer follows :func:`instab.inference.preprocess`'s plan: the shorter side to
``round(min(size) / crop)``, the longer by torchvision's rule, then the centre crop (zeros
where the window overhangs). The OpenCV resizers need ``opencv-python-headless``
(``pip install 'instab[resizers]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from instab._native import core
from instab._shared.validation import check_choice, check_threads

__all__ = [
    "DEFAULT_RESIZER",
    "RESIZERS",
    "check_resizer",
    "resize_crop",
    "resize_image",
]

DEFAULT_RESIZER = "pillow-bilinear"
RESIZERS = (
    "pillow-bilinear",
    "pillow-bicubic",
    "pillow-lanczos",
    "pillow-box",
    "opencv-linear",
    "opencv-area",
    "opencv-cubic",
    "opencv-nearest",
    "nearest",
)
_PILLOW_FILTERS = {
    "pillow-bilinear": Image.Resampling.BILINEAR,
    "pillow-bicubic": Image.Resampling.BICUBIC,
    "pillow-lanczos": Image.Resampling.LANCZOS,
    "pillow-box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}
_OPENCV_FLAGS = {
    "opencv-linear": "INTER_LINEAR",
    "opencv-area": "INTER_AREA",
    "opencv-cubic": "INTER_CUBIC",
    "opencv-nearest": "INTER_NEAREST",
}
_MODES = {2: "L", 3: "RGB", 4: "RGBA"}


def _cv2() -> Any:
    try:
        import cv2  # function-local: OpenCV is an optional dependency (the [resizers] extra)
    except ImportError:
        raise ImportError(
            "the opencv-* resizers need OpenCV: pip install 'instab[resizers]' (opencv-python-headless)"
        ) from None
    return cv2


def check_resizer(resizer: Any, name: str = "resizer") -> str:
    """Validate a resizer name (one of :data:`RESIZERS`, case-insensitive); returns it lower-cased.

    Raises ValueError listing the choices for an unknown name, TypeError for a non-string,
    and ImportError (saying what to install) for an OpenCV resizer without OpenCV.
    """
    value = check_choice(resizer, RESIZERS, name)
    if value in _OPENCV_FLAGS:
        _cv2()
    return value


def resize_image(image: np.ndarray, height: int, width: int, resizer: str) -> np.ndarray:
    """Resize one uint8 HxW or HxWxC (C = 3 or 4) image to ``height x width`` with ``resizer``.

    The result is what the named library returns for the whole image (for the Pillow
    names, ``Image.fromarray(image).resize((width, height), filter)``; for the OpenCV names
    ``cv2.resize(image, (width, height), interpolation=flag)``), as a uint8 array of the
    same channel count. ``pillow-bilinear`` here goes through Pillow itself.
    """
    resizer = check_resizer(resizer)
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"image: expected uint8 HxW or HxWxC with C in (3, 4), got {a.dtype} {a.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"size: must be at least 1x1, got {height}x{width}")
    if resizer in _OPENCV_FLAGS:
        cv2 = _cv2()
        flag = getattr(cv2, _OPENCV_FLAGS[resizer])
        out = cv2.resize(np.ascontiguousarray(a), (int(width), int(height)), interpolation=flag)
        return np.asarray(out, dtype=np.uint8).reshape((int(height), int(width)) + a.shape[2:])
    pil = Image.fromarray(a, _MODES[a.shape[2] if a.ndim == 3 else 2])
    return np.asarray(pil.resize((int(width), int(height)), _PILLOW_FILTERS[resizer]))


def _crop(image: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """``Image.crop((left, top, left + width, top + height))``: zeros where the window overhangs."""
    h, w = image.shape[:2]
    out = np.zeros((height, width) + image.shape[2:], dtype=np.uint8)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, h), min(left + width, w)
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def resize_crop(
    images: Sequence[np.ndarray],
    height: int,
    width: int,
    short_side: int,
    resizer: str,
    threads: int | None = None,
) -> list[np.ndarray]:
    """Resize each image so its shorter side is ``short_side``, then centre-crop ``height x width``.

    The plan (resized size, crop corner) is :func:`instab.inference.resize_plan`'s; the
    resize is :func:`resize_image` with ``resizer``. Grey (HxW) images stay grey; RGBA drops
    alpha first, as :func:`~instab.inference.preprocess` does. Images are processed on
    ``threads`` worker threads (the libraries release the GIL); the result does not depend
    on the thread count.
    """
    resizer = check_resizer(resizer)
    workers = max(1, min(check_threads(threads), len(images)))

    def one(im: np.ndarray) -> np.ndarray:
        if im.ndim == 3 and im.shape[2] == 4:
            im = im[:, :, :3]
        rh, rw, top, left = core.preprocess_plan(int(im.shape[0]), int(im.shape[1]), int(short_side), height, width)
        return _crop(resize_image(im, rh, rw, resizer), top, left, height, width)

    if workers <= 1:
        return [one(im) for im in images]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, images))
