"""Camera raw files as image input: read one into a :class:`RawImage`, or develop it with the default ISP.

Every command that reads images (simulate, score, characterize, mitigate, demo)
accepts the raw files LibRaw reads, recognised by suffix (:data:`RAW_SUFFIXES`).
``isp:`` and ``device:`` environments develop a :class:`RawImage` directly from
its mosaic; every other environment (and the classifier) gets it developed by
:func:`develop_default`: instab's own :func:`instab.isp.develop` with the file's
metadata (camera white balance, the file's colour matrix), Malvar demosaic,
sRGB transfer function and no tone curve (as LibRaw), uint8 RGB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from instab._shared.decode import RAW_SUFFIXES, is_raw_path
from instab._shared.decode import decode as decode_pixels
from instab.isp.dng import read_raw
from instab.isp.pipeline import RawMeta, develop

# The default development of a raw file (documented in docs/isp.md).
DEFAULT_DEMOSAIC = "malvar"
DEFAULT_GAMMA = "srgb"
DEFAULT_TONE = "none"
RAW_MODES = ("develop", "keep")


@dataclass(frozen=True, eq=False)
class RawImage:
    """One real raw capture: its uint16 ``[H, W]`` Bayer mosaic, its metadata and the file it came from.

    ``path`` is None for a mosaic made in memory (LibRaw then reads it through a DNG
    written on the fly). :attr:`developed` is the default development, computed once.
    """

    mosaic: np.ndarray
    meta: RawMeta
    path: str | None = None

    def __post_init__(self) -> None:
        m = np.asarray(self.mosaic)
        if m.dtype != np.uint16 or m.ndim != 2 or min(m.shape) < 2:
            raise ValueError(f"RawImage: expected a uint16 [H, W] mosaic of at least 2x2, got {m.dtype} {m.shape}")
        if not isinstance(self.meta, RawMeta):
            raise TypeError(f"RawImage: meta must be a RawMeta, got {type(self.meta).__name__}")
        object.__setattr__(self, "mosaic", np.ascontiguousarray(m))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the mosaic, which is also the developed image's."""
        h, w = self.mosaic.shape
        return int(h), int(w)

    @cached_property
    def developed(self) -> np.ndarray:
        """The default development (see the module docstring), uint8 ``[H, W, 3]``."""
        return develop_default(self.mosaic, self.meta)


def develop_default(mosaic: np.ndarray, meta: RawMeta, threads: int | None = None) -> np.ndarray:
    """Develop a real raw mosaic the default way: camera white balance, Malvar, sRGB gamma, no tone curve."""
    out: np.ndarray = develop(mosaic, meta, DEFAULT_DEMOSAIC, wb="camera", gamma=DEFAULT_GAMMA, tone=DEFAULT_TONE,
                              out_dtype="uint8", threads=threads)
    return out


def read_raw_image(path: str | os.PathLike[str]) -> RawImage:
    """Read a camera raw file (any of :data:`RAW_SUFFIXES`) as a :class:`RawImage`.

    Raises OSError naming the file when it is missing or LibRaw cannot read it as
    an RGB Bayer raw (see :func:`instab.isp.read_raw`).
    """
    name = os.fspath(path)
    try:
        mosaic, meta = read_raw(name)
    except (ValueError, FileNotFoundError) as exc:  # one error type for unreadable input, as decode's
        raise OSError(str(exc)) from exc
    return RawImage(mosaic, meta, name)


def decode(item: Any, *, raw: str = "develop", draft_size: int | None = None, channels: int = 3) -> Any:
    """Decode one image like :func:`instab._shared.decode.decode`, camera raw files included.

    Parameters
    ----------
    item : str, os.PathLike, bytes, numpy.ndarray or RawImage
        A path whose suffix is one of :data:`RAW_SUFFIXES` is read with LibRaw; a
        :class:`RawImage` is taken as it is; anything else goes to
        :func:`instab._shared.decode.decode`.
    raw : {"develop", "keep"}, default "develop"
        ``develop`` returns a raw file developed by :func:`develop_default` (uint8
        ``[H, W, 3]``); ``keep`` returns the :class:`RawImage` itself.
    draft_size, channels
        As in :func:`instab._shared.decode.decode`; raw files ignore ``draft_size``
        and give RGB only (``channels=3``).

    Returns
    -------
    numpy.ndarray or RawImage
    """
    if raw not in RAW_MODES:
        raise ValueError(f"raw: expected one of {RAW_MODES}, got {raw!r}")
    if isinstance(item, RawImage):
        found = item
    elif isinstance(item, (str, os.PathLike)) and is_raw_path(item):
        found = read_raw_image(item)
    else:
        return decode_pixels(item, draft_size=draft_size, channels=channels)
    if channels != 3:
        raise ValueError(f"channels: a camera raw file develops to RGB only, got channels={channels}")
    return found if raw == "keep" else found.developed


def develop_paths(paths: list[Any]) -> tuple[list[Any], dict[int, str]]:
    """Camera raw files among ``paths`` developed by default; the others unchanged, for a reader of encoded images.

    Returns the items and, for raw files that cannot be read, their index -> the
    error line (the item stays the path, so that the reader fails on it too).
    """
    items: list[Any] = []
    errors: dict[int, str] = {}
    for i, p in enumerate(paths):
        if isinstance(p, (str, os.PathLike)) and is_raw_path(p):
            try:
                items.append(decode(p))
                continue
            except OSError as exc:  # a per-item error: the others go on
                errors[i] = f"OSError: {exc}"
        items.append(p)
    return items, errors


def for_environment(items: list[Any], takes_raw: bool) -> list[Any]:
    """The input for one environment: raw items kept where it ``takes_raw``, else developed by default."""
    if takes_raw:
        return list(items)
    return [it.developed if isinstance(it, RawImage) else it for it in items]


__all__ = [
    "DEFAULT_DEMOSAIC",
    "DEFAULT_GAMMA",
    "DEFAULT_TONE",
    "RAW_MODES",
    "RAW_SUFFIXES",
    "RawImage",
    "decode",
    "develop_default",
    "develop_paths",
    "for_environment",
    "is_raw_path",
    "read_raw_image",
]
