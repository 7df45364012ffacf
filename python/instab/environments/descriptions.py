"""What each environment kind takes: parameters, defaults and one example (``instab envs list``).

One table for every kind of :func:`~instab.environments.registry.known_kinds`, kept beside
the modules that implement them (``codecs``, ``distort``, ``isp_kinds``, ``devices``,
``decoders``, ``resizers``; their docstrings have the details). A test checks that every
known kind is described and that each example parses, so a new kind needs its entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from instab.environments.distort import PHONE_DEFAULTS
from instab.environments.isp_kinds import ISP_NAMES
from instab.environments.registry import known_kinds
from instab.inference.resizers import RESIZERS
from instab.isp import GAMMAS, PATTERNS, TONES


@dataclass(frozen=True)
class ParamInfo:
    """A parameter (``key=value``) or word of an environment kind: its default (``"required"``: none), meaning."""

    name: str
    default: str
    meaning: str


@dataclass(frozen=True)
class KindInfo:
    """What an environment kind does, the parameters it takes and one example text that ``parse`` accepts."""

    kind: str
    summary: str
    params: tuple[ParamInfo, ...]
    example: str


_DRAWN = "or lo..hi drawn per image"


def _range(key: str) -> str:
    lo, hi = PHONE_DEFAULTS[key]
    return f"{lo:g}..{hi:g}"


DESCRIPTIONS: dict[str, KindInfo] = {k.kind: k for k in (
    # codecs.py
    KindInfo("jpeg", "JPEG round trip (Pillow)", (
        ParamInfo("q", "75", f"quality 1..100, {_DRAWN}"),
        ParamInfo("subsampling", "420", "chroma subsampling: 444, 422 or 420"),
    ), "jpeg:q=85,subsampling=420"),
    KindInfo("png", "lossless PNG round trip", (ParamInfo("level", "6", "zlib level 0..9"),), "png:level=9"),
    KindInfo("webp", "WebP round trip", (
        ParamInfo("q", "80", f"quality 0..100, {_DRAWN}"),
        ParamInfo("lossless", "off", "word: lossless WebP"),
    ), "webp:q=80"),
    KindInfo("heif", "HEVC in HEIF round trip (pillow-heif)", (
        ParamInfo("q", "libheif's default", f"quality 0..100, {_DRAWN}"),), "heif:q=50"),
    KindInfo("avif", "AV1 in AVIF round trip (Pillow)", (
        ParamInfo("q", "75", f"quality 0..100, {_DRAWN}"),), "avif:q=60"),
    # distort.py
    KindInfo("brightness", "add delta to every channel value in [0, 1]", (
        ParamInfo("delta", "required", f"-1..1, {_DRAWN}"),), "brightness:delta=0.1"),
    KindInfo("contrast", "scale each channel about its image mean", (
        ParamInfo("factor", "required", f">= 0, {_DRAWN}"),), "contrast:factor=0.8..1.2"),
    KindInfo("saturation", "scale the HSV saturation", (
        ParamInfo("factor", "required", f">= 0, {_DRAWN}"),), "saturation:factor=1.2"),
    KindInfo("hue", "rotate the HSV hue", (
        ParamInfo("delta", "required", f"turns, -1..1, {_DRAWN}"),), "hue:delta=-0.05..0.05"),
    KindInfo("gamma", "x ** g on every channel value in [0, 1]", (
        ParamInfo("g", "required", f"> 0, {_DRAWN}"),), "gamma:g=2.2"),
    KindInfo("noise", "pixel noise, seeded per image", (
        ParamInfo("gaussian | poisson", "required", "word: the noise model"),
        ParamInfo("sigma", "required (gaussian)", f"standard deviation on [0, 1] values, {_DRAWN}"),
        ParamInfo("shot", "required (poisson)", "signal-dependent variance per unit of signal"),
        ParamInfo("read", "0 (poisson)", "read-noise standard deviation"),
    ), "noise:gaussian,sigma=0.05"),
    KindInfo("distort", "a simulated phone: random hue, contrast, brightness, saturation, then JPEG", (
        ParamInfo("phone", "required", "word: the only preset"),
        ParamInfo("strength", "1", "0..2, scales every range about its identity value"),
        ParamInfo("hue", _range("hue"), "range of the hue shift (turns)"),
        ParamInfo("contrast", _range("contrast"), "range of the contrast factor"),
        ParamInfo("brightness", _range("brightness"), "range of the brightness delta"),
        ParamInfo("saturation", _range("saturation"), "range of the saturation factor"),
        ParamInfo("q", _range("q"), "JPEG quality range (at strength s: round(95 - 45 s)..95)"),
    ), "distort:phone,strength=0.5"),
    # isp_kinds.py
    KindInfo("isp", "unprocess sRGB to a simulated raw capture (a real raw file: its own mosaic), then develop it "
             "with one software ISP", (
        ParamInfo("<isp>", "required", "word: " + ", ".join(ISP_NAMES)),
        ParamInfo("awb", "off", "word: automatic instead of as-shot white balance"),
        ParamInfo("gamma", "srgb", "output transfer function: " + ", ".join(GAMMAS)),
        ParamInfo("tone", "none", "tone curve of the simulated camera: " + ", ".join(TONES)),
        ParamInfo("pattern", "rggb", "Bayer pattern: " + ", ".join(PATTERNS)),
        ParamInfo("shot", "0", "shot-noise variance per unit of linear signal"),
        ParamInfo("read", "0", "read-noise variance"),
    ), "isp:libraw-ahd,awb"),
    # devices.py
    KindInfo("device", "a photo by a virtual device: sensor noise, its ISP and its codec (a real raw file: "
             "its ISP and codec on the file's mosaic)", (
        ParamInfo("NAME", "required", "word: a device profile (instab devices list; more with --profiles)"),
        ParamInfo("shot", "0", "repeat shot: a fresh sensor-noise draw of the same scene"),
    ), "device:phone-mid,shot=1"),
    # decoders.py
    KindInfo("decode", "JPEG-encode once (Pillow), then decode with one named decoder", (
        ParamInfo("<decoder>", "required", "word: pillow, pillow-draft (DCT scaling to 1/2), opencv, libjpeg-turbo"),
        ParamInfo("dct", "islow", "libjpeg-turbo IDCT: islow or ifast"),
        ParamInfo("upsampling", "fancy", "libjpeg-turbo chroma upsampling: fancy or simple"),
        ParamInfo("q", "90", "quality 1..100 of the one JPEG encode"),
        ParamInfo("subsampling", "420", "chroma subsampling of the encode: 444, 422 or 420"),
    ), "decode:libjpeg-turbo,dct=ifast,upsampling=simple"),
    # resizers.py
    KindInfo("resize", "store a thumbnail: resize down by scale and back up with one named resizer", (
        ParamInfo("<resizer>", "required", "word: " + ", ".join(RESIZERS) + " (opencv-*: instab[resizers])"),
        ParamInfo("scale", "0.5", "thumbnail size relative to the image, in (0, 1]"),
    ), "resize:opencv-area,scale=0.25"),
)}


def describe(kind: str) -> KindInfo:
    """The description of environment ``kind`` (one of :func:`~instab.environments.registry.known_kinds`).

    Raises
    ------
    ValueError
        For a kind :func:`~instab.environments.registry.parse` does not know.
    """
    if kind not in DESCRIPTIONS:
        raise ValueError(f"environment kind: unknown {kind!r} (known: {', '.join(known_kinds())})")
    return DESCRIPTIONS[kind]


__all__ = ["DESCRIPTIONS", "KindInfo", "ParamInfo", "describe"]
