"""The camera raw pipeline: unprocess sRGB images to Bayer mosaics, develop mosaics to sRGB.

- :func:`unprocess` turns sRGB images into plausible raw captures (after Brooks et
  al., "Unprocessing Images for Learned Raw Denoising", CVPR 2019): inverse tone
  curve, inverse transfer function, inverse colour matrix, inverse white balance,
  Bayer sampling, optional shot and read noise keyed by (seed, image index).
- :func:`develop` is instab's one consistent ISP: black and white level, white
  balance, demosaic (bilinear, Malvar-He-Cutler or Hamilton-Adams), colour
  matrix, transfer function and tone curve, uint8/uint16/float32 out.
- :func:`write_dng` / :func:`read_raw` (in :mod:`instab.isp.dng`) move mosaics in and
  out of files that LibRaw reads.
- Environments ``isp:libraw-<algorithm>`` and ``isp:instab-<method>`` (in
  :mod:`instab.environments.isp_kinds`) develop unprocessed images with LibRaw or with this
  pipeline.

The kernels are in C++ (``csrc/isp.cpp``); this module validates and converts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from instab._native import core
from instab._shared.validation import check_choice, check_seed, check_threads

PATTERNS = ("rggb", "grbg", "gbrg", "bggr")
DEMOSAICS = ("bilinear", "malvar", "ha")
GAMMAS = ("srgb", "bt709", "linear")
TONES = ("none", "smoothstep")
OUT_DTYPES = ("uint8", "uint16", "float32")

# Linear sRGB (D65) -> XYZ, the constants dcraw and LibRaw use, so that a matrix
# derived here matches theirs.
SRGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=np.float64,
)

# The default sensor: the Nikon sensor of the shared raw frame (14-bit, D65
# ColorMatrix and as-shot white balance from github.com/mushfiqulalam/isp, MIT).
NIKON_XYZ_TO_CAM = (
    (0.9020, -0.2890, -0.0715),
    (-0.4535, 1.2436, 0.2348),
    (-0.0934, 0.1919, 0.7086),
)
NIKON_WB_GAINS = (1.94921875, 1.0, 1.34375)
NIKON_BLACK_LEVEL = 600.0
NIKON_WHITE_LEVEL = 15520.0


def _tuple_floats(value: Any, n: int, name: str) -> tuple[float, ...]:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1 and n > 1:
        arr = np.repeat(arr, n)
    if arr.size != n:
        raise ValueError(f"{name}: expected {n} numbers (or one), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: values must be finite, got {arr.tolist()}")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class RawMeta:
    """What is needed to develop a Bayer mosaic.

    pattern: Bayer layout of the top-left 2x2 block (``rggb``, ``grbg``, ``gbrg``, ``bggr``).
    black_level: per 2x2 position in row-major order (a single number is repeated).
    white_level: the raw value of a saturated pixel.
    wb_gains: as-shot white-balance multipliers for R, G, B (DNG AsShotNeutral = 1 / gains).
    xyz_to_cam: the D65 colour matrix XYZ -> camera (DNG ColorMatrix1), or None for a
        camera whose channels are already linear sRGB.
    """

    pattern: str = "rggb"
    black_level: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    white_level: float = 65535.0
    wb_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    xyz_to_cam: tuple[tuple[float, float, float], ...] | None = field(default=None)

    def __post_init__(self) -> None:
        pattern = str(self.pattern).lower()
        if pattern not in PATTERNS:
            raise ValueError(f"pattern: expected one of {', '.join(PATTERNS)}, got {self.pattern!r}")
        object.__setattr__(self, "pattern", pattern)
        black = _tuple_floats(self.black_level, 4, "black_level")
        white = float(self.white_level)
        if not np.isfinite(white) or white <= 0:
            raise ValueError(f"white_level: must be a positive number, got {self.white_level!r}")
        if min(black) < 0 or max(black) >= white:
            raise ValueError(f"black_level: must be >= 0 and below white_level {white}, got {black}")
        gains = _tuple_floats(self.wb_gains, 3, "wb_gains")
        if min(gains) <= 0:
            raise ValueError(f"wb_gains: must be positive, got {gains}")
        object.__setattr__(self, "black_level", black)
        object.__setattr__(self, "white_level", white)
        object.__setattr__(self, "wb_gains", gains)
        if self.xyz_to_cam is not None:
            m = np.asarray(self.xyz_to_cam, dtype=np.float64)
            if m.shape != (3, 3) or not np.all(np.isfinite(m)):
                raise ValueError(f"xyz_to_cam: expected a finite 3x3 matrix, got shape {m.shape}")
            if abs(np.linalg.det(m @ SRGB_TO_XYZ)) < 1e-9 or np.any(np.abs((m @ SRGB_TO_XYZ).sum(1)) < 1e-9):
                raise ValueError("xyz_to_cam: matrix is singular")
            object.__setattr__(self, "xyz_to_cam", tuple(tuple(float(v) for v in row) for row in m))

    @property
    def rgb_to_cam(self) -> np.ndarray:
        """Linear sRGB -> camera, rows scaled so that white stays white (dcraw's convention)."""
        if self.xyz_to_cam is None:
            return np.eye(3)
        m = np.asarray(self.xyz_to_cam, dtype=np.float64) @ SRGB_TO_XYZ
        row_sums: npt.NDArray[np.float64] = m.sum(axis=1, keepdims=True)
        return m / row_sums

    @property
    def cam_to_rgb(self) -> np.ndarray:
        """Camera (white-balanced) -> linear sRGB: the inverse of :attr:`rgb_to_cam`."""
        return np.linalg.inv(self.rgb_to_cam)

    @property
    def as_shot_neutral(self) -> tuple[float, float, float]:
        """The DNG AsShotNeutral: the camera's response to white, green = 1."""
        r, g, b = self.wb_gains
        return (g / r, g / g, g / b)

    def replace(self, **changes: Any) -> RawMeta:
        """A copy with some fields changed."""
        return replace(self, **changes)


def nikon_meta(pattern: str = "rggb") -> RawMeta:
    """The default simulated sensor (14-bit Nikon: levels, D65 matrix and as-shot white balance)."""
    return RawMeta(
        pattern=pattern,
        black_level=(NIKON_BLACK_LEVEL,) * 4,
        white_level=NIKON_WHITE_LEVEL,
        wb_gains=NIKON_WB_GAINS,
        xyz_to_cam=NIKON_XYZ_TO_CAM,
    )


def _rgb3(image: np.ndarray) -> np.ndarray:
    """HWC uint8 with 1, 3 or 4 channels -> contiguous HW3 (gray repeated, alpha dropped)."""
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    elif image.shape[-1] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image)


def unprocess(
    images: Any,
    pattern: str = "rggb",
    seed: int = 0,
    *,
    meta: RawMeta | None = None,
    shot_noise: float = 0.0,
    read_noise: float = 0.0,
    tone: str = "smoothstep",
    gamma: str = "srgb",
    highlight_safe: bool = True,
    threads: int | None = None,
    first_index: int = 0,
) -> tuple[Any, RawMeta]:
    """Turn sRGB images into Bayer raw mosaics, the inverse of :func:`develop`.

    images: uint8 ``[N, H, W, C]``, one ``[H, W, C]`` image, or a list of HWC images
        (C = 1, 3 or 4; gray is repeated, alpha dropped). H and W must be >= 2.
    pattern: Bayer layout of the output (overrides ``meta.pattern``).
    seed: noise seed; image i draws from the stream (seed, first_index + i), so a
        batch split in pieces gives the same mosaics when first_index is set.
    meta: the simulated sensor (levels, white balance, colour matrix); default
        :func:`nikon_meta`.
    shot_noise, read_noise: noise variance ``shot_noise * x + read_noise`` for a
        linear signal x in [0, 1] (Brooks et al. use ~1e-4..1e-2 and ~1e-8..1e-4);
        0 (default) means no noise.
    tone, gamma: the tone curve (``smoothstep`` or ``none``) and transfer function
        (``srgb``, ``bt709``, ``linear``) to invert; develop with the same to
        round-trip.
    highlight_safe: blend the inverse white balance towards 1 for pixels brighter
        than 0.9 (Brooks et al.), so highlights saturate as in a camera.

    Returns (mosaic, meta): uint16 ``[N, H, W]``, ``[H, W]`` or a list, mirroring the
    input, with values in [0, white_level]; and the meta to develop it with.
    """
    base = meta if meta is not None else nikon_meta()
    if not isinstance(base, RawMeta):
        raise TypeError(f"meta: expected a RawMeta, got {type(base).__name__}")
    m = base.replace(pattern=check_choice(pattern, PATTERNS, "pattern"))
    tone = check_choice(tone, TONES, "tone")
    gamma = check_choice(gamma, GAMMAS, "gamma")
    for name, v in (("shot_noise", shot_noise), ("read_noise", read_noise)):
        if not isinstance(v, (int, float, np.floating, np.integer)) or not np.isfinite(v) or v < 0:
            raise ValueError(f"{name}: expected a finite variance >= 0, got {v!r}")
    seed_i, first = check_seed(seed, bits=64), check_seed(first_index, "first_index", bits=64)
    nthreads = check_threads(threads)
    inv_gains = [1.0 / g for g in m.wb_gains]

    def run(batch: np.ndarray, first: int) -> np.ndarray:
        return core.isp_unprocess(
            batch, m.pattern, m.rgb_to_cam, inv_gains, bool(highlight_safe), tone, gamma,
            list(m.black_level), m.white_level, float(shot_noise), float(read_noise), seed_i, first,
            nthreads,
        )

    if isinstance(images, np.ndarray) and images.ndim == 3:
        _check_image(images, "images")
        return run(_rgb3(images)[None], first)[0], m
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"images: expected uint8 pixels, got dtype {images.dtype}")
        if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
            raise ValueError(f"images: expected [N, H, W, C] with C in (1, 3, 4), got shape {images.shape}")
        return run(_rgb3(images), first), m
    if isinstance(images, (list, tuple)):
        out = []
        for i, im in enumerate(images):
            a = np.asarray(im)
            _check_image(a, f"images[{i}]")
            out.append(run(_rgb3(a)[None], first + i)[0])
        return out, m
    raise TypeError(f"images: expected a uint8 array or a list of HWC arrays, got {type(images).__name__}")


def _check_image(a: np.ndarray, name: str) -> None:
    if a.dtype != np.uint8:
        raise TypeError(f"{name}: expected uint8 pixels, got dtype {a.dtype}")
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected an HWC image with C in (1, 3, 4), got shape {a.shape}")


def auto_wb_gains(mosaic: np.ndarray, meta: RawMeta, saturation: float = 0.98) -> tuple[float, float, float]:
    """Gray-world white balance: gains that make the mean R, G and B equal.

    Means are over the black-subtracted, normalised mosaic, leaving out pixels at
    or above ``saturation`` (clipped highlights carry no colour information).
    """
    m = _as_mosaic(mosaic, "mosaic")
    if m.ndim != 2:
        raise ValueError(f"mosaic: expected one [H, W] mosaic, got shape {m.shape}")
    cfa = pattern_colours(meta.pattern)
    sums = np.zeros(3)
    counts = np.zeros(3)
    for k in range(4):
        y, x = divmod(k, 2)
        v = (m[y::2, x::2].astype(np.float64) - meta.black_level[k]) / (meta.white_level - meta.black_level[k])
        v = v[(v < saturation)]
        sums[cfa[k]] += np.clip(v, 0, None).sum()
        counts[cfa[k]] += v.size
    means = sums / np.maximum(counts, 1)
    if np.any(means <= 0):
        return (1.0, 1.0, 1.0)
    return (means[1] / means[0], 1.0, means[1] / means[2])


def pattern_colours(pattern: str) -> list[int]:
    """Colour (0 R, 1 G, 2 B) at each 2x2 position, row-major."""
    return ["rgb".index(ch) for ch in check_choice(pattern, PATTERNS, "pattern")]


def _as_mosaic(m: Any, name: str) -> np.ndarray:
    a = np.asarray(m)
    if a.dtype not in (np.uint16, np.float32):
        if a.dtype.kind in "ui" and a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError(f"{name}: integer values must fit uint16")
        if a.dtype.kind in "ui":
            a = a.astype(np.uint16)
        elif a.dtype == np.float64:
            a = a.astype(np.float32)
        else:
            raise TypeError(f"{name}: expected uint16 or float32 raw values, got dtype {a.dtype}")
    return np.ascontiguousarray(a)


def develop(
    mosaic: Any,
    meta: RawMeta,
    demosaic: str = "malvar",
    *,
    wb: str | Sequence[float] = "camera",
    gamma: str = "srgb",
    tone: str = "smoothstep",
    out_dtype: str = "uint8",
    threads: int | None = None,
) -> Any:
    """Develop Bayer mosaics into RGB images with instab's one consistent ISP.

    Steps: (raw - black) / (white - black), clip to [0, 1]; times the white-balance
    gain, clip; demosaic (borders mirrored), clip; colour matrix, clip; transfer
    function; tone curve; scale to ``out_dtype``. The kernels run in C++.

    Parameters
    ----------
    mosaic : array_like or list of array_like
        Raw values (uint16, or float32 in the same units as meta's levels),
        ``[H, W]``, ``[N, H, W]`` or a list of 2-D mosaics; H and W >= 2.
    meta : RawMeta
        Pattern, black/white level, white balance and colour matrix, e.g. from
        :func:`unprocess`, :func:`nikon_meta` or :func:`instab.isp.read_raw`.
    demosaic : {"malvar", "bilinear", "ha"}, default "malvar"
        ``malvar`` (Malvar-He-Cutler, gradient-corrected), ``bilinear``, or
        ``ha`` (Hamilton-Adams, edge-directed).
    wb : {"camera", "auto", "none"} or sequence of 3 floats, default "camera"
        ``camera`` (``meta.wb_gains``), ``auto`` (gray world, per image),
        ``none``, or three positive gains (R, G, B).
    gamma : {"srgb", "bt709", "linear"}, default "srgb"
        Output transfer function.
    tone : {"smoothstep", "none"}, default "smoothstep"
        Tone curve (``smoothstep`` is the one :func:`unprocess` inverts by default).
    out_dtype : {"uint8", "uint16", "float32"}, default "uint8"
        Output type; float32 values lie in [0, 1].
    threads : int, optional
        Worker threads (default: all cores). Results do not depend on it.

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray
        RGB ``[H, W, 3]``, ``[N, H, W, 3]`` or a list of ``[H, W, 3]``,
        mirroring the form of ``mosaic``.

    Raises
    ------
    TypeError
        If ``meta`` is not a :class:`RawMeta` or the raw values are neither
        uint16 nor float32.
    ValueError
        If an option is not one of its choices, white-balance gains are not
        positive, or a mosaic has the wrong shape.

    See Also
    --------
    unprocess : the inverse, sRGB images to mosaics.

    Examples
    --------
    Two flat-coloured images to mosaics and back; a flat field comes back exactly:

    >>> import numpy as np
    >>> from instab import isp
    >>> rgb = np.zeros((2, 6, 8, 3), np.uint8)
    >>> rgb[0], rgb[1] = (200, 120, 60), (30, 90, 160)
    >>> mosaic, meta = isp.unprocess(rgb, highlight_safe=False)
    >>> mosaic.shape, mosaic.dtype.name, meta.pattern
    ((2, 6, 8), 'uint16', 'rggb')
    >>> out = isp.develop(mosaic, meta)
    >>> out.shape, out.dtype.name
    ((2, 6, 8, 3), 'uint8')
    >>> out[0, 2, 3].tolist(), out[1, 2, 3].tolist()
    ([200, 120, 60], [30, 90, 160])

    One mosaic, another demosaic, float output:

    >>> one = isp.develop(mosaic[0], meta, "bilinear", out_dtype="float32")
    >>> one.shape, one.dtype.name
    ((6, 8, 3), 'float32')
    """
    if not isinstance(meta, RawMeta):
        raise TypeError(f"meta: expected a RawMeta, got {type(meta).__name__}")
    demosaic = check_choice(demosaic, DEMOSAICS, "demosaic")
    gamma = check_choice(gamma, GAMMAS, "gamma")
    tone = check_choice(tone, TONES, "tone")
    out_dtype = check_choice(out_dtype, OUT_DTYPES, "out_dtype")
    fixed_gains = _fixed_gains(wb, meta)
    cam_to_rgb = meta.cam_to_rgb
    nthreads = check_threads(threads)

    def run(batch: np.ndarray) -> np.ndarray:
        # Fixed gains develop the batch in one call; gray-world gains differ per image.
        gains_list = [fixed_gains] if fixed_gains is not None else [auto_wb_gains(b, meta) for b in batch]
        parts = [batch] if len(gains_list) == 1 else [batch[i : i + 1] for i in range(len(batch))]
        out = [
            core.isp_develop(
                part, meta.pattern, list(meta.black_level), meta.white_level, list(g), cam_to_rgb,
                demosaic, gamma, tone, out_dtype, nthreads,
            )
            for part, g in zip(parts, gains_list, strict=True)
        ]
        return out[0] if len(out) == 1 else np.concatenate(out)

    if _is_plain_bilinear(meta, demosaic, fixed_gains, gamma, tone, out_dtype):
        # Nothing but the demosaic changes a value: its exact integer kernel gives
        # the same pixels (up to the float path's rounding at exact halves) faster.
        cfa = pattern_colours(meta.pattern)

        def plain(batch: np.ndarray) -> np.ndarray:
            if batch.dtype != np.uint16:
                return run(batch)
            return core.isp_demosaic(batch, cfa, "bilinear", "uint16", nthreads)

        return _map_mosaics(mosaic, plain)

    return _map_mosaics(mosaic, run)


def _is_plain_bilinear(
    meta: RawMeta, demosaic: str, gains: tuple[float, ...] | None, gamma: str, tone: str, out_dtype: str
) -> bool:
    """Whether develop is a bilinear demosaic alone, uint16 in and out (levels 0..65535, no
    gains, identity colour matrix, linear): then :func:`instab.isp.demosaic` computes it."""
    return (
        demosaic == "bilinear" and out_dtype == "uint16" and gamma == "linear" and tone == "none"
        and gains == (1.0, 1.0, 1.0) and meta.black_level == (0.0, 0.0, 0.0, 0.0) and meta.white_level == 65535.0
        and meta.xyz_to_cam is None
    )


def _fixed_gains(wb: str | Sequence[float], meta: RawMeta) -> tuple[float, ...] | None:
    """The white-balance gains ``wb`` asks for, or None for gray world (computed per image)."""
    if isinstance(wb, str):
        wb = check_choice(wb, ("camera", "auto", "none"), "wb")
        return {"camera": meta.wb_gains, "none": (1.0, 1.0, 1.0)}.get(wb)
    gains = _tuple_floats(wb, 3, "wb")
    if min(gains) <= 0:
        raise ValueError(f"wb: gains must be positive, got {gains}")
    return gains


def _map_mosaics(mosaic: Any, run: Callable[[np.ndarray], np.ndarray]) -> Any:
    """``run`` over ``[N, H, W]`` batches; the result mirrors the form of ``mosaic`` (2-D, 3-D or a list)."""
    if isinstance(mosaic, (list, tuple)):
        out = []
        for i, m in enumerate(mosaic):
            a = _as_mosaic(m, f"mosaic[{i}]")
            if a.ndim != 2:
                raise ValueError(f"mosaic[{i}]: expected a 2-D mosaic, got shape {a.shape}")
            out.append(run(a[None])[0])
        return out
    a = _as_mosaic(mosaic, "mosaic")
    if a.ndim == 2:
        return run(a[None])[0]
    if a.ndim == 3:
        return run(a)
    raise ValueError(f"mosaic: expected [H, W] or [N, H, W], got shape {a.shape}")


def psnr(a: np.ndarray, b: np.ndarray, peak: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB between two images of one shape (peak from the dtype)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ, {a.shape} vs {b.shape}")
    if peak is None:
        peak = float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else 1.0
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak**2 / mse))


def read_headerless(path: str | os.PathLike[str], height: int, width: int) -> np.ndarray:
    """A headerless little-endian uint16 mosaic (as in ../shared/data/raw) as [height, width].

    Such a file carries no geometry: it is given here, and the file size must match
    it. :func:`instab.isp.read_raw` refuses these files rather than guess.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{os.fspath(path)} does not exist")
    data = np.fromfile(path, dtype="<u2")
    if data.size != height * width:
        raise ValueError(f"{path}: has {data.size} uint16 values, expected {height}x{width}={height * width}")
    return data.reshape(height, width).astype(np.uint16)



__all__ = [
    "RawMeta", "nikon_meta", "unprocess", "develop", "auto_wb_gains", "read_headerless",
    "psnr", "pattern_colours", "PATTERNS", "DEMOSAICS", "GAMMAS", "TONES",
]
