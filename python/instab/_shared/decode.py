"""Turn one input item (path, encoded bytes or array) into an RGB uint8 HWC array."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
from PIL import Image

DECODE_MODES = ("full", "draft")


def decode(item: Any, draft_size: int | None = None) -> np.ndarray:
    """Decode ``item`` to RGB uint8 [H, W, 3]. Raises on unreadable input.

    ``draft_size``: when given, JPEG files are decoded with Pillow's draft mode
    (DCT-domain downscaling by 1/2, 1/4 or 1/8) to the smallest scale whose
    shorter side is still at least ``draft_size``, as fast camera/phone decoders do.
    """
    if isinstance(item, np.ndarray):
        return as_rgb_array(item)
    if isinstance(item, (str, os.PathLike)):
        src: Any = os.fspath(item)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(item))
    else:
        raise TypeError(f"expected a path, encoded bytes or a uint8 array, got {type(item).__name__}")
    with Image.open(src) as im:
        if draft_size is not None and im.format == "JPEG":
            w, h = im.size
            # draft keeps both sides >= the requested box; ask for the shorter side only
            box = (draft_size, round(h * draft_size / w)) if w <= h else (round(w * draft_size / h), draft_size)
            im.draft("RGB", box)
        if im.mode != "RGB":
            im = im.convert("RGB")
        return np.asarray(im)  # decodes; already-RGB images skip convert's extra copy


def as_rgb_array(arr: np.ndarray) -> np.ndarray:
    """Check an in-memory image: uint8 [H, W, 3] (gray [H, W] and RGBA are converted)."""
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an image of shape [H, W, 3], got {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"empty image of shape {arr.shape}")
    return np.ascontiguousarray(arr)

__all__ = [
    "DECODE_MODES",
    "as_rgb_array",
    "decode",
]
