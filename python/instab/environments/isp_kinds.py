"""Software-ISP environments: sRGB images -> unprocess (seeded) -> develop by one ISP.

Text form::

    isp:<isp>[,awb][,gamma=srgb|bt709|linear][,tone=none|smoothstep]
        [,pattern=rggb|grbg|gbrg|bggr][,shot=<variance>][,read=<variance>]

``<isp>`` is ``libraw-<algorithm>`` (LibRaw through rawpy, algorithm one of
linear, vng, ppg, ahd, dcb, dht, aahd) or ``instab-<method>`` (instab's
pipeline, method one of bilinear, malvar, ha). ``awb`` replaces the camera
(as-shot) white balance by automatic white balance (LibRaw's ``use_auto_wb``;
instab's gray world). ``gamma`` is the output transfer function (default srgb).
``tone`` is the tone curve the simulated camera's raw is unprocessed through
(default none); instab's pipeline re-applies it, LibRaw has none. ``shot`` and
``read`` add sensor noise (variances, see :func:`instab.isp.unprocess`), keyed by
(seed, image index), so every ISP given the same seed develops the same raw.

The simulated sensor is :func:`instab.isp.nikon_meta` (14-bit Nikon levels,
colour matrix and white balance). A real raw file (:class:`instab.isp.RawImage`)
is not unprocessed: LibRaw develops the file itself, instab's pipeline its
mosaic with the file's metadata; ``pattern``, ``shot`` and ``read`` do not apply.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from instab import isp
from instab._shared.validation import check_threads
from instab.environments.registry import Environment, EnvOutput, Spec, image_items, register

LIBRAW_ALGORITHMS = ("linear", "vng", "ppg", "ahd", "dcb", "dht", "aahd")
INSTAB_METHODS = isp.DEMOSAICS
ISP_NAMES = tuple(f"libraw-{a}" for a in LIBRAW_ALGORITHMS) + tuple(f"instab-{m}" for m in INSTAB_METHODS)

# rawpy's gamma is (power, toe slope), dcraw's curve: these give the sRGB and BT.709 curves.
_RAWPY_GAMMA = {"srgb": (2.4, 12.92), "bt709": (2.222, 4.5), "linear": (1.0, 1.0)}


def _float_param(spec: Spec, key: str) -> float:
    v = spec.param(key, 0.0, float)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"environment {spec}: {key}= must be a finite variance >= 0, got {v}")
    return float(v)


class IspEnvironment(Environment):
    """Unprocess sRGB images to a simulated raw capture, then develop it with one ISP.

    A real raw capture (an :class:`instab.isp.RawImage` item) is developed directly
    from its mosaic and metadata: no unprocessing, no added noise, its own pattern.
    """

    accepts_raw = True

    def __init__(self, spec: Spec):
        super().__init__(spec)
        names = [w for w in spec.words if w != "awb"]
        if len(names) != 1 or names[0] not in ISP_NAMES:
            raise ValueError(
                f"environment {spec}: expected one ISP name, e.g. isp:libraw-ahd or isp:instab-malvar "
                f"(known: {', '.join(ISP_NAMES)})"
            )
        spec.check(words=ISP_NAMES + ("awb",), keys=("gamma", "tone", "pattern", "shot", "read"))
        self.isp = names[0]
        self.engine, _, self.method = self.isp.partition("-")
        self.auto_wb = "awb" in spec.words
        self.gamma = spec.param("gamma", "srgb")
        self.tone = spec.param("tone", "none")
        self.pattern = spec.param("pattern", "rggb")
        for key, value, options in (
            ("gamma", self.gamma, isp.GAMMAS), ("tone", self.tone, isp.TONES), ("pattern", self.pattern, isp.PATTERNS)
        ):
            if value not in options:
                raise ValueError(f"environment {spec}: {key}={value} is not one of {', '.join(options)}")
        self.shot = _float_param(spec, "shot")
        self.read = _float_param(spec, "read")
        if self.engine == "libraw":
            import rawpy  # LibRaw loads with the first libraw environment, not with instab.environments

            algo = getattr(rawpy.DemosaicAlgorithm, self.method.upper())
            if not algo.isSupported:
                raise ValueError(f"environment {spec}: this LibRaw build lacks the {self.method.upper()} demosaic")
            self._algo = algo
        self.meta = isp.nikon_meta(self.pattern)

    def raw(self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0) -> Any:
        """The simulated raw captures this environment develops (same for every ISP given one seed)."""
        mosaics, _ = isp.unprocess(
            images, self.pattern, seed, meta=self.meta, shot_noise=self.shot, read_noise=self.read,
            tone=self.tone, gamma="srgb", threads=threads, first_index=first_index,
        )
        return mosaics

    def develop(self, mosaic: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Develop one [H, W] or a batch [N, H, W] of this environment's raw mosaics to uint8 RGB."""
        threads = check_threads(threads)  # LibRaw ignores it, but it means the same everywhere
        if self.engine == "instab":
            return isp.develop(
                mosaic, self.meta, self.method, wb="auto" if self.auto_wb else "camera",
                gamma=self.gamma, tone=self.tone, out_dtype="uint8", threads=threads,
            )
        if mosaic.ndim == 3:
            return np.stack([self.develop(m) for m in mosaic])
        return develop_libraw(mosaic, self.meta, self.method, auto_wb=self.auto_wb, gamma=self.gamma)

    def develop_real(self, raw: isp.RawImage, threads: int | None = None) -> np.ndarray:
        """Develop a real raw capture with this ISP: LibRaw on the file itself, instab from its mosaic."""
        threads = check_threads(threads)  # LibRaw ignores it, but it means the same everywhere
        if self.engine == "instab":
            return isp.develop(
                raw.mosaic, raw.meta, self.method, wb="auto" if self.auto_wb else "camera",
                gamma=self.gamma, tone=self.tone, out_dtype="uint8", threads=threads,
            )
        if raw.path is None:
            return develop_libraw(raw.mosaic, raw.meta, self.method, auto_wb=self.auto_wb, gamma=self.gamma)
        return develop_libraw_file(raw.path, self.method, auto_wb=self.auto_wb, gamma=self.gamma)

    def apply(self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0) -> EnvOutput:
        threads = check_threads(threads)  # checked here: per-image errors below are caught
        if isinstance(images, (list, tuple)) and any(isinstance(im, isp.RawImage) for im in images):
            return self._apply_mixed(images, seed, threads, first_index)
        items, was_batch, errors = image_items(images)
        outs: list[np.ndarray | None] = [None] * len(items)
        if was_batch and self.engine == "instab" and items and min(images.shape[1:3]) >= 2:
            batch = self.develop(self.raw(images, seed, threads, first_index), threads)
            return EnvOutput(images=batch, errors=errors)
        for i, im in enumerate(items):
            if im is None:  # its error is already recorded
                continue
            try:
                outs[i] = self.develop(self.raw(im, seed, threads, first_index + i), threads)
            except (ValueError, TypeError) as exc:
                errors[i] = f"{self}: {exc}"
        if was_batch:
            n, h, w = images.shape[:3]
            batch = np.zeros((n, h, w, 3), np.uint8)
            for i, o in enumerate(outs):
                if o is not None:
                    batch[i] = o
            return EnvOutput(images=batch, errors=errors)
        return EnvOutput(images=outs, errors=errors)


    def _apply_mixed(self, images: Sequence[Any], seed: int, threads: int | None, first_index: int) -> EnvOutput:
        """A list holding real raw captures: those are developed as they are, RGB items as in :meth:`apply`."""
        outs: list[np.ndarray | None] = []
        errors: list[str | None] = []
        for i, im in enumerate(images):
            if isinstance(im, isp.RawImage):
                try:
                    outs.append(self.develop_real(im, threads))
                    errors.append(None)
                except (ValueError, TypeError) as exc:
                    outs.append(None)
                    errors.append(f"{self}: {exc}")
                continue
            one = self.apply([im], seed, threads, first_index + i)
            outs.append(one.images[0])
            errors.append(one.errors[0])
        return EnvOutput(images=outs, errors=errors)


def develop_libraw(
    mosaic: np.ndarray, meta: isp.RawMeta, algorithm: str = "ahd", *, auto_wb: bool = False, gamma: str = "srgb",
    out_bps: int = 8,
) -> np.ndarray:
    """Develop one uint16 mosaic with LibRaw (rawpy) through an in-memory DNG.

    LibRaw runs with its brightening off and the maximum not re-estimated from
    the data, so that exposure matches :func:`instab.isp.develop`.
    Raises ValueError when LibRaw cannot develop it (e.g. images under 22 pixels wide).
    """
    import rawpy  # heavy native library: loaded on first use

    buf = io.BytesIO()
    isp.write_dng(buf, mosaic, meta)
    buf.seek(0)
    try:
        with rawpy.imread(buf) as raw:
            rgb = raw.postprocess(**libraw_settings(algorithm, auto_wb=auto_wb, gamma=gamma, out_bps=out_bps))
    except rawpy.LibRawError as exc:
        raise ValueError(f"LibRaw cannot develop a {mosaic.shape[0]}x{mosaic.shape[1]} mosaic ({exc})") from None
    if rgb.shape[:2] != mosaic.shape:
        raise ValueError(f"LibRaw returned {rgb.shape[:2]} for a {mosaic.shape} mosaic")
    return rgb


def libraw_settings(algorithm: str, *, auto_wb: bool = False, gamma: str = "srgb", out_bps: int = 8) -> dict[str, Any]:
    """The keyword arguments of rawpy's ``postprocess`` for one ``isp:libraw-*`` environment.

    Brightening off and the maximum not re-estimated from the data, so that
    exposure matches :func:`instab.isp.develop`; no flip; sRGB primaries.
    """
    import rawpy  # heavy native library: loaded on first use

    if gamma not in _RAWPY_GAMMA:
        raise ValueError(f"gamma: expected one of {', '.join(_RAWPY_GAMMA)}, got {gamma!r}")
    algo = getattr(rawpy.DemosaicAlgorithm, algorithm.upper(), None)
    if algo is None:
        raise ValueError(f"algorithm: unknown LibRaw demosaic {algorithm!r}")
    return {
        "demosaic_algorithm": algo, "use_camera_wb": not auto_wb, "use_auto_wb": auto_wb, "no_auto_bright": True,
        "gamma": _RAWPY_GAMMA[gamma], "output_bps": out_bps, "user_flip": 0, "adjust_maximum_thr": 0.0,
        "output_color": rawpy.ColorSpace.sRGB,
    }


def develop_libraw_file(
    path: str, algorithm: str = "ahd", *, auto_wb: bool = False, gamma: str = "srgb", out_bps: int = 8,
) -> np.ndarray:
    """Develop a camera raw file itself with LibRaw (rawpy), with :func:`libraw_settings`.

    Raises ValueError naming the file when LibRaw cannot develop it.
    """
    import rawpy  # heavy native library: loaded on first use

    settings = libraw_settings(algorithm, auto_wb=auto_wb, gamma=gamma, out_bps=out_bps)
    try:
        with rawpy.imread(path) as raw:
            rgb: np.ndarray = raw.postprocess(**settings)
    except rawpy.LibRawError as exc:
        raise ValueError(f"{path}: LibRaw cannot develop this file ({type(exc).__name__})") from None
    return rgb


@register("isp")
def _make(spec: Spec) -> Environment:
    return IspEnvironment(spec)

__all__ = [
    "INSTAB_METHODS",
    "ISP_NAMES",
    "IspEnvironment",
    "LIBRAW_ALGORITHMS",
    "develop_libraw",
    "develop_libraw_file",
    "libraw_settings",
]
