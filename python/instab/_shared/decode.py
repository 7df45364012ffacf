"""The one image decoder: a path, encoded bytes or an array in, a uint8 HWC array out.

Every layer decodes through :func:`decode` (the classifier, the codec round trips,
the studies, the training data), so one file gives the same pixels everywhere.
EXIF orientation is not applied: pixels come as stored in the file.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any

import numpy as np
from PIL import Image

DECODE_MODES = ("full", "draft")
# Camera raw files LibRaw reads, by suffix: a DNG is a TIFF that Pillow may open
# as its preview, so the suffix, not the content, says "raw". Headerless .raw is not here.
RAW_SUFFIXES = (".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw")
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}

_heif_lock = threading.Lock()
_heif_status: list[str | None] = []  # empty until the first call of register_heif


def register_heif() -> str | None:
    """Make Pillow open and save HEIF (pillow-heif's plugin), once per process.

    Returns None when HEIF works, else why it does not (pillow-heif missing).
    Safe to call from several threads; later calls cost nothing.
    """
    if not _heif_status:
        with _heif_lock:
            if not _heif_status:
                try:
                    # Imported here, not at module top: pillow-heif loads libheif (~0.1 s) and
                    # only HEIF files need it; registering on the decoder's first use makes HEIF
                    # work whatever the caller imported first.
                    import pillow_heif

                    pillow_heif.register_heif_opener()
                    _heif_status.append(None)
                except ImportError as exc:  # pragma: no cover - pillow-heif is a dependency
                    _heif_status.append(f"pillow-heif is not installed ({exc})")
    return _heif_status[0]


def decode(item: Any, *, draft_size: int | None = None, channels: int = 3) -> np.ndarray:
    """Decode one image to a uint8 ``[H, W, channels]`` array. Raises on unreadable input.

    Parameters
    ----------
    item : str, os.PathLike, bytes or numpy.ndarray
        A file path, the encoded bytes of a file (any format Pillow or pillow-heif
        reads: JPEG, PNG, WebP, HEIF, AVIF, ...), or an image already in memory
        (uint8 ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]``; checked by :func:`as_rgb_array`).
    draft_size : int, optional
        When given, JPEG files are decoded with Pillow's draft mode (DCT-domain
        downscaling by 1/2, 1/4 or 1/8) to the smallest scale whose shorter side is
        still at least ``draft_size``, as fast camera/phone decoders do.
    channels : {3, 1, 4}, default 3
        RGB, grey (``[H, W, 1]``) or RGBA output; arrays are only accepted for 3.

    Returns
    -------
    numpy.ndarray
        uint8 ``[H, W, channels]``, pixels as stored (no EXIF rotation).

    Raises
    ------
    OSError
        The file is missing, not an image (``PIL.UnidentifiedImageError``),
        truncated or corrupt, or declares more pixels than Pillow's
        decompression-bomb limit (``Image.MAX_IMAGE_PIXELS`` x 2).
    ValueError, TypeError
        A bad ``channels``, in-memory array or kind of ``item``.
    """
    if channels not in _MODES:
        raise ValueError(f"channels: expected 1, 3 or 4, got {channels!r}")
    if isinstance(item, np.ndarray):
        if channels != 3:
            raise ValueError(f"channels: an in-memory image is checked as RGB, got channels={channels}")
        return as_rgb_array(item)
    if isinstance(item, (str, os.PathLike)):
        src: Any = os.fspath(item)
        if is_raw_path(src):
            raise OSError(f"{src}: a camera raw file; read it with instab.isp.decode, which develops it")
    elif isinstance(item, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(item))
    else:
        raise TypeError(f"expected a path, encoded bytes or a uint8 array, got {type(item).__name__}")
    register_heif()
    mode = _MODES[channels]
    try:
        with Image.open(src) as im:
            if draft_size is not None and im.format == "JPEG":
                w, h = im.size
                # draft keeps both sides >= the requested box; ask for the shorter side only
                box = (draft_size, round(h * draft_size / w)) if w <= h else (round(w * draft_size / h), draft_size)
                im.draft(mode, box)
            img: Image.Image = im.convert(mode) if im.mode != mode else im
            out = np.asarray(img)  # decodes; images already in the mode skip convert's extra copy
    except SyntaxError as exc:  # Pillow's PNG reader reports a broken chunk found while decoding this way
        raise OSError(f"broken image file: {exc}") from exc
    except Image.DecompressionBombError as exc:  # a hostile or absurd header: refuse before allocating
        raise OSError(f"image too large to decode safely: {exc}") from exc
    return out[:, :, None] if channels == 1 else out


def is_raw_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a camera raw file by its suffix (one of :data:`RAW_SUFFIXES`, any case)."""
    return os.path.splitext(os.fspath(path))[1].lower() in RAW_SUFFIXES


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
    "RAW_SUFFIXES",
    "as_rgb_array",
    "decode",
    "is_raw_path",
    "register_heif",
]
