"""Decoder variants: the image is encoded once as JPEG, then decoded by one named decoder.

Environments (see :mod:`instab.environments`)::

    decode:pillow                       libjpeg-turbo as Pillow ships it (Pillow's default decode)
    decode:pillow-draft                 Pillow's draft mode: DCT scaling to 1/2 in the decoder
    decode:opencv                       cv2.imdecode (OpenCV's bundled libjpeg-turbo)
    decode:libjpeg-turbo                libjpeg-turbo through simplejpeg, with its two switches:
    decode:libjpeg-turbo,dct=ifast      the fast integer IDCT (simplejpeg's ``fastdct``)
    decode:libjpeg-turbo,upsampling=simple  plain chroma upsampling (``fastupsample``), not "fancy"
    decode:opencv,q=75,subsampling=444  the JPEG encode's quality and chroma subsampling

Every decoder reads the same bytes: image -> Pillow JPEG encode (``q``, default 90;
``subsampling``, default 420) -> the named decoder. So two ``decode:`` environments with
the same ``q`` and ``subsampling`` differ only in the decoder. ``dct=float`` is not
offered: simplejpeg exposes only the islow and ifast IDCTs. HEIF and AVIF decoders are
not offered either: this build's pillow-heif has one HEIF decoder (libde265) and Pillow's
AVIF plugin one codec (dav1d), and neither exposes an option that changes pixels.

``pillow-draft`` asks Pillow's draft mode for half the size, which selects libjpeg's
DCT scaling by 1/2: the output is ``ceil(H/2) x ceil(W/2)``, the smallest DCT scale
whose size is still at least half the image's. As the size changes, a uint8 batch
array gets a per-item error for it (pass a list of images).

Grey images (C = 1) are encoded and decoded as grey; RGBA (C = 4) cannot be stored in
JPEG and gives a per-item error. Images are processed in parallel threads; decoding
is deterministic, so ``seed`` plays no part.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from instab.environments.codecs import encode
from instab.environments.registry import Environment, EnvOutput, Spec, map_images, register

DECODERS = ("pillow", "pillow-draft", "opencv", "libjpeg-turbo")
DCTS = ("islow", "ifast")
UPSAMPLINGS = ("fancy", "simple")
DEFAULT_QUALITY = 90
DEFAULT_SUBSAMPLING = "420"
_SUBSAMPLING = {"444": "4:4:4", "422": "4:2:2", "420": "4:2:0"}
_INSTALL = "install instab[decoders] (pip install 'instab[decoders]')"


def optional_module(name: str) -> ModuleType:
    """Import an optional decoder library (``cv2`` or ``simplejpeg``); a ValueError says how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(f"{name} is not installed ({exc}): {_INSTALL}") from None


@dataclass(frozen=True)
class DecoderSettings:
    """One decoder and the JPEG encode its bytes come from."""

    decoder: str
    dct: str = "islow"  # libjpeg-turbo only
    upsampling: str = "fancy"  # libjpeg-turbo only
    quality: int = DEFAULT_QUALITY
    subsampling: str = DEFAULT_SUBSAMPLING

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder: unknown {self.decoder!r} (known: {', '.join(DECODERS)})")
        if self.dct == "float":
            raise ValueError("dct=float is not available: simplejpeg exposes only islow and ifast")
        if self.dct not in DCTS:
            raise ValueError(f"dct: expected one of {', '.join(DCTS)}, got {self.dct!r}")
        if self.upsampling not in UPSAMPLINGS:
            raise ValueError(f"upsampling: expected one of {', '.join(UPSAMPLINGS)}, got {self.upsampling!r}")
        if self.decoder != "libjpeg-turbo" and (self.dct, self.upsampling) != ("islow", "fancy"):
            raise ValueError(f"dct and upsampling: only for libjpeg-turbo, not {self.decoder}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise ValueError(f"q: expected an integer in 1..100, got {self.quality!r}")
        if self.subsampling not in _SUBSAMPLING:
            raise ValueError(f"subsampling: expected 444, 422 or 420, got {self.subsampling!r}")

    def encode(self, image: np.ndarray) -> bytes:
        """The JPEG bytes every decoder reads (Pillow, this quality and subsampling)."""
        return encode(image, "jpeg", quality=self.quality, subsampling=_SUBSAMPLING[self.subsampling])

    def decoder_function(self) -> Callable[[bytes, int], np.ndarray]:
        """``f(jpeg_bytes, channels) -> uint8 HWC``; imports the decoder's library (ValueError if missing)."""
        if self.decoder == "pillow":
            return decode_pillow
        if self.decoder == "pillow-draft":
            return decode_pillow_draft
        if self.decoder == "opencv":
            cv2 = optional_module("cv2")
            return lambda data, channels: decode_opencv(data, channels, cv2)
        simplejpeg = optional_module("simplejpeg")
        fastdct, fastupsample = self.dct == "ifast", self.upsampling == "simple"
        return lambda data, channels: decode_simplejpeg(data, channels, simplejpeg, fastdct, fastupsample)


def _pillow_image(data: bytes, channels: int, draft: bool) -> np.ndarray:
    mode = "L" if channels == 1 else "RGB"
    with Image.open(io.BytesIO(data)) as pil:
        if draft:
            w, h = pil.size
            # Pillow picks the largest DCT scale whose size is >= the request: 1/2 here.
            pil.draft(mode, (max(1, w // 2), max(1, h // 2)))
        out = np.asarray(pil.convert(mode))
    return out[:, :, None] if channels == 1 else out


def decode_pillow(data: bytes, channels: int = 3) -> np.ndarray:
    """Pillow's default JPEG decode of ``data`` to uint8 HWC (``channels`` 1 or 3)."""
    return _pillow_image(data, channels, draft=False)


def decode_pillow_draft(data: bytes, channels: int = 3) -> np.ndarray:
    """Pillow's draft decode at half size (libjpeg DCT scaling 1/2): ``ceil(H/2) x ceil(W/2)``."""
    return _pillow_image(data, channels, draft=True)


def decode_opencv(data: bytes, channels: int, cv2: Any) -> np.ndarray:
    """``cv2.imdecode`` of ``data`` (BGR turned to RGB), without EXIF rotation."""
    flags = (cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    out = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if out is None:
        raise ValueError("cv2.imdecode could not decode the bytes")
    return out[:, :, None] if channels == 1 else np.ascontiguousarray(out[:, :, ::-1])


def decode_simplejpeg(data: bytes, channels: int, simplejpeg: Any, fastdct: bool, fastupsample: bool) -> np.ndarray:
    """libjpeg-turbo through ``simplejpeg.decode_jpeg`` with its ``fastdct``/``fastupsample`` switches."""
    return np.asarray(simplejpeg.decode_jpeg(data, colorspace="GRAY" if channels == 1 else "RGB",
                                             fastdct=fastdct, fastupsample=fastupsample))


def decode_images(images: Any, settings: DecoderSettings, threads: int | None = None) -> EnvOutput:
    """Encode every image once as JPEG and decode it with ``settings.decoder``; see the module docstring.

    Parameters
    ----------
    images : uint8 [N, H, W, C] array or list of HWC arrays (None for a missing one)
    settings : DecoderSettings
    threads : int, optional
        None for all cores; results do not depend on it.

    Returns
    -------
    EnvOutput
        Decoded images, the JPEG sizes in bytes (-1 for a failed item), per-item errors.
    """
    decoder = settings.decoder_function()

    def one(i: int, im: np.ndarray) -> tuple[np.ndarray, int]:
        data = settings.encode(im)
        return decoder(data, im.shape[-1]), len(data)

    return map_images(images, one, f"decode:{settings.decoder}", threads=threads)


class DecoderEnvironment(Environment):
    """An environment that JPEG-encodes images once and decodes them with one decoder."""

    def __init__(self, spec: Spec, settings: DecoderSettings):
        super().__init__(spec)
        self.settings = settings

    def apply(self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0) -> EnvOutput:
        return decode_images(images, self.settings, threads=threads)


def _canonical(s: DecoderSettings) -> Spec:
    params: list[tuple[str, str]] = []
    if s.decoder == "libjpeg-turbo":
        params += [("dct", s.dct), ("upsampling", s.upsampling)]
    if s.quality != DEFAULT_QUALITY:
        params.append(("q", str(s.quality)))
    if s.subsampling != DEFAULT_SUBSAMPLING:
        params.append(("subsampling", s.subsampling))
    return Spec("decode", (s.decoder,), tuple(params))


@register("decode")
def _build(spec: Spec) -> DecoderEnvironment:
    unknown = [w for w in spec.words if w not in DECODERS]
    if unknown:
        raise ValueError(f"environment {spec}: unknown decoder {unknown[0]!r} (known: {', '.join(DECODERS)})")
    spec.check(DECODERS, ("dct", "upsampling", "q", "subsampling"))
    if len(spec.words) != 1:
        raise ValueError(f"environment {spec}: name one decoder (one of {', '.join(DECODERS)})")
    try:
        settings = DecoderSettings(
            spec.words[0], spec.param("dct", "islow"), spec.param("upsampling", "fancy"),
            spec.param("q", DEFAULT_QUALITY, cast=int), spec.param("subsampling", DEFAULT_SUBSAMPLING))
        settings.decoder_function()  # a missing library is reported when the environment is made
    except ValueError as exc:
        raise ValueError(f"environment {spec}: {exc}") from None
    return DecoderEnvironment(_canonical(settings), settings)


def decoder_names() -> list[str]:
    """Every decoder variant as environment text (the decode experiment's list)."""
    turbo = [f"decode:libjpeg-turbo,dct={d},upsampling={u}" for d in DCTS for u in UPSAMPLINGS]
    return ["decode:pillow", "decode:pillow-draft", "decode:opencv", *turbo]


__all__ = [
    "DCTS",
    "DECODERS",
    "DEFAULT_QUALITY",
    "DEFAULT_SUBSAMPLING",
    "DecoderEnvironment",
    "DecoderSettings",
    "UPSAMPLINGS",
    "decode_images",
    "decode_opencv",
    "decode_pillow",
    "decode_pillow_draft",
    "decode_simplejpeg",
    "decoder_names",
    "optional_module",
]
