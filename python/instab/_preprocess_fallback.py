"""TEMPORARY Pillow/numpy stand-in for instab.preprocess until the C++ kernel lands on main.

Same signature and semantics; delete once ``instab.preprocessing`` exists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image


def preprocess(
    images: Any,
    size: int,
    *,
    crop: float = 0.875,
    layout: str = "nhwc",
    dtype: str = "float32",
    scale: Any = (1 / 255, 1 / 255, 1 / 255),
    offset: Any = (0.0, 0.0, 0.0),
    threads: int | None = None,
) -> np.ndarray:
    out = []
    short = round(size / crop)
    for img in images:
        h, w = img.shape[:2]
        if w <= h:
            nw, nh = short, int(short * h / w)
        else:
            nh, nw = short, int(short * w / h)
        r = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((nw, nh), Image.BILINEAR))
        top, left = round((nh - size) / 2), round((nw - size) / 2)
        out.append(r[top : top + size, left : left + size])
    batch = np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)
    if dtype == "float32":
        batch = batch.astype(np.float32) * np.asarray(scale, np.float32) + np.asarray(offset, np.float32)
    if layout == "nchw":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch)
