"""Codec round trips: encode then decode in memory with Pillow and pillow-heif.

Environments (see :mod:`instab.environments`)::

    jpeg                      Pillow's defaults (quality 75, 4:2:0)
    jpeg:q=85                 quality 1..100
    jpeg:q=50,subsampling=420 chroma subsampling 444, 422 or 420
    jpeg:q=50..95             quality drawn per image, uniformly over the integers
    png  png:level=9          lossless, zlib level 0..9 (default 6)
    webp webp:q=80            lossy, quality 0..100 (default 80)
    webp:lossless             lossless WebP
    heif heif:q=50            HEVC in HEIF via pillow-heif (libheif default quality)
    avif avif:q=60            AV1 in AVIF via Pillow (default quality 75)

A random quality (``lo..hi``) is drawn for image ``i`` from
``CounterRng(seed, first_index + i).uniform2(0)`` (the same Philox generator as
the distortions), so it does not depend on threads or batch splits.

Images are processed in parallel threads (the codecs release the GIL). An image
that fails (a codec that cannot store its channels, a corrupt result) gets a
per-item error in :class:`~instab.environments.EnvOutput`; the rest go on.
AVIF is encoded single-threaded per image so its output never depends on the
machine; parallelism is across images.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from instab._native import core
from instab._shared.decode import decode, register_heif
from instab.environments.registry import Environment, EnvOutput, Spec, map_images, parse, register

FORMATS = ("jpeg", "png", "webp", "heif", "avif")
_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "heif": "HEIF", "avif": "AVIF"}
_SUBSAMPLING = {"444": "4:4:4", "422": "4:2:2", "420": "4:2:0"}
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_QUALITY_RANGE = {"jpeg": (1, 100), "webp": (0, 100), "heif": (0, 100), "avif": (0, 100)}


@dataclass(frozen=True)
class CodecSettings:
    """One codec configuration. ``quality`` is an int, an inclusive (lo, hi) range, or None for the default."""

    fmt: str
    quality: int | tuple[int, int] | None = None
    subsampling: str | None = None  # jpeg: "444", "422" or "420"
    lossless: bool = False  # webp
    level: int | None = None  # png zlib level

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"fmt: unknown format {self.fmt!r} (known: {', '.join(FORMATS)})")
        q = self.quality
        if q is not None:
            if self.fmt not in _QUALITY_RANGE:
                raise ValueError(f"quality: {self.fmt} has no quality setting")
            lo_ok, hi_ok = _QUALITY_RANGE[self.fmt]
            lo, hi = q if isinstance(q, tuple) else (q, q)
            for v in (lo, hi):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise TypeError(f"quality: expected an int or an (lo, hi) pair of ints, got {q!r}")
            if not lo_ok <= lo <= hi <= hi_ok:
                raise ValueError(f"quality: {self.fmt} quality must lie in {lo_ok}..{hi_ok} with lo <= hi, got {q!r}")
            if self.lossless:
                raise ValueError("quality: not used with lossless WebP")
        if self.subsampling is not None and (self.fmt != "jpeg" or self.subsampling not in _SUBSAMPLING):
            raise ValueError(f"subsampling: only for jpeg, one of 444, 422, 420; got {self.subsampling!r}")
        if self.lossless and self.fmt != "webp":
            raise ValueError(f"lossless: only for webp, not {self.fmt}")
        if self.level is not None and (self.fmt != "png" or not 0 <= self.level <= 9):
            raise ValueError(f"level: only for png, 0..9; got {self.level!r}")

    def save_options(self, quality: int | None) -> dict[str, Any]:
        """Pillow ``Image.save`` keyword arguments for one image with this (drawn) quality."""
        opts: dict[str, Any] = {}
        if quality is not None:
            opts["quality"] = int(quality)
        if self.subsampling is not None:
            opts["subsampling"] = _SUBSAMPLING[self.subsampling]
        if self.lossless:
            opts["lossless"] = True
        if self.level is not None:
            opts["compress_level"] = self.level
        if self.fmt == "avif":
            opts["max_threads"] = 1
        return opts


def encode(image: np.ndarray, fmt: str, **options: Any) -> bytes:
    """Encode one HWC uint8 image (C = 1, 3 or 4) with Pillow; ``options`` go to ``Image.save``."""
    if fmt not in _PIL_FORMAT:
        raise ValueError(f"fmt: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    heif_error = register_heif() if fmt == "heif" else None  # saving HEIF needs pillow-heif's plugin too
    if heif_error:
        raise RuntimeError(heif_error)
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] not in _MODES:
        raise ValueError(f"image: expected a uint8 HWC array with 1, 3 or 4 channels, got {a.dtype} {a.shape}")
    pil = Image.fromarray(a[:, :, 0] if a.shape[-1] == 1 else a, _MODES[a.shape[-1]])
    buf = io.BytesIO()
    pil.save(buf, format=_PIL_FORMAT[fmt], **options)
    return buf.getvalue()


def draw_qualities(quality: int | tuple[int, int] | None, n: int, seed: int, first_index: int) -> list[int | None]:
    """Per-image quality: fixed, or uniform over lo..hi keyed by (seed, first_index + i)."""
    if not isinstance(quality, tuple):
        return [quality] * n
    lo, hi = quality
    if n == 0:
        return []
    streams = np.arange(first_index, first_index + n, dtype=np.uint64)
    u = core.philox_uniform(int(seed) % (1 << 64), streams, np.zeros(n, dtype=np.uint64))[:, 0]
    return [min(hi, lo + int(math.floor(v * (hi - lo + 1)))) for v in u]


def roundtrip_settings(
    images: Any, settings: CodecSettings, seed: int = 0, threads: int | None = None, first_index: int = 0
) -> EnvOutput:
    """Encode and decode every image with ``settings``; see the module docstring."""
    # a bad kind of input is refused by map_images; draw one quality per item it will see
    n = len(images) if isinstance(images, (list, tuple, np.ndarray)) else 0
    qualities = draw_qualities(settings.quality, n, seed, first_index)

    def one(i: int, im: np.ndarray) -> tuple[np.ndarray, int]:
        data = encode(im, settings.fmt, **settings.save_options(qualities[i]))
        out = decode(data, channels=im.shape[-1])
        if out.shape != im.shape:
            raise ValueError(f"decoded shape {out.shape} differs from the input's {im.shape}")
        return out, len(data)

    return map_images(images, one, settings.fmt, threads=threads)


def roundtrip(
    images: Any,
    fmt: str,
    quality: int | tuple[int, int] | None = None,
    *,
    subsampling: str | int | None = None,
    lossless: bool = False,
    level: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    first_index: int = 0,
) -> EnvOutput:
    """Round-trip ``images`` (uint8 [N,H,W,C] or a list of HWC arrays) through a codec.

    Example: ``instab.environments.codecs.roundtrip(images, "jpeg", quality=85)``. Returns the
    decoded images, the encoded byte sizes (-1 for a failed item) and per-item errors.
    """
    ss = None if subsampling is None else str(subsampling).replace(":", "")
    return roundtrip_settings(
        images, CodecSettings(fmt, quality, ss, lossless, level), seed=seed, threads=threads, first_index=first_index
    )


class CodecEnvironment(Environment):
    """An environment that round-trips images through one codec."""

    def __init__(self, spec: Spec, settings: CodecSettings):
        super().__init__(spec)
        self.settings = settings

    def apply(self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0) -> EnvOutput:
        return roundtrip_settings(images, self.settings, seed=seed, threads=threads, first_index=first_index)


def parse_quality(spec: Spec) -> int | tuple[int, int] | None:
    """The ``q=`` parameter of an environment: an int, an inclusive ``lo..hi`` pair, or None when absent."""
    text = spec.param("q")
    if text is None:
        return None
    try:
        if ".." in text:
            lo_s, _, hi_s = text.partition("..")
            return (int(lo_s), int(hi_s))
        return int(text)
    except ValueError:
        raise ValueError(f"environment {spec}: q={text!r} must be an integer or lo..hi integers") from None


def _build(fmt: str, spec: Spec) -> CodecEnvironment:
    words = {"webp": ("lossless",)}.get(fmt, ())
    keys = {"jpeg": ("q", "subsampling"), "png": ("level",), "webp": ("q",), "heif": ("q",), "avif": ("q",)}[fmt]
    spec.check(words, keys)
    heif_error = register_heif() if fmt == "heif" else None
    if heif_error:
        raise ValueError(f"environment {spec}: {heif_error}")
    quality = parse_quality(spec) if "q" in keys else None
    subsampling = spec.param("subsampling")
    level = spec.param("level", cast=int)
    lossless = "lossless" in spec.words
    try:
        settings = CodecSettings(fmt, quality, subsampling, lossless, level)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"environment {spec}: {exc}") from None
    return CodecEnvironment(_canonical(settings), settings)


def _canonical(s: CodecSettings) -> Spec:
    words = ("lossless",) if s.lossless else ()
    params: list[tuple[str, str]] = []
    if s.quality is not None:
        q = s.quality
        params.append(("q", f"{q[0]}..{q[1]}" if isinstance(q, tuple) else str(q)))
    if s.subsampling is not None:
        params.append(("subsampling", s.subsampling))
    if s.level is not None:
        params.append(("level", str(s.level)))
    return Spec(s.fmt, words, tuple(params))


def _register(fmt: str) -> None:
    register(fmt)(lambda spec: _build(fmt, spec))


for _fmt in FORMATS:
    _register(_fmt)


def codec_environments(formats: Sequence[str] = FORMATS) -> list[Environment]:
    """Environments for ``formats`` at their default settings (the compression-format experiment)."""
    return [parse(f) for f in formats]

__all__ = [
    "CodecEnvironment",
    "CodecSettings",
    "FORMATS",
    "codec_environments",
    "decode",
    "draw_qualities",
    "encode",
    "parse_quality",
    "roundtrip",
    "roundtrip_settings",
]
