"""A real camera's sensor, read from a raw file's own metadata: the sensor half of a device profile.

:func:`read_sensor_profile` reads, from a DNG's tags (tifffile) or, for other raw
formats, from what LibRaw (rawpy) knows about the file:

- the Bayer pattern and the black and white levels;
- the colour matrix, as camera (white-balanced) -> linear sRGB, the matrix
  :attr:`instab.isp.RawMeta.cam_to_rgb` gives. For a DNG it is
  ``AnalogBalance x CameraCalibration x ColorMatrix`` (XYZ -> camera) of the
  calibration illuminant closest to D65 (instab's pipeline is sRGB, D65),
  turned into camera -> sRGB through :data:`instab.isp.pipeline.SRGB_TO_XYZ` as
  :func:`instab.isp.write_dng` and LibRaw do. A ForwardMatrix is noted, not used;
- the as-shot white balance (AsShotNeutral, else AsShotWhiteXY, else LibRaw's
  camera white balance, else LibRaw's daylight balance for the model);
- the sensor noise: the DNG ``NoiseProfile`` tag (per colour plane ``(S, O)``,
  variance ``S x + O`` of a black-subtracted, white-scaled raw value ``x`` in
  [0, 1]: exactly the ``shot_noise``/``read_noise`` of :func:`instab.isp.unprocess`;
  the planes are averaged). Without it the read noise is estimated from the
  sensor's masked (optically black) pixels when the file has some (DNG
  ``MaskedAreas``; LibRaw's top/left margins for other formats), and the shot
  noise is left unknown (None: the device profile keeps its documented default).

Each field's source is recorded in :attr:`SensorProfile.sources` as ``read: ...``,
``estimated: ...`` or ``default: ...``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instab.isp.dng import raw_format, read_raw
from instab.isp.pipeline import SRGB_TO_XYZ, RawMeta

# DNG 1.6 tag ids.
_NEW_SUBFILE_TYPE = 254
_PHOTOMETRIC = 262
_MAKE, _MODEL = 271, 272
_DNG_VERSION = 50706
_UNIQUE_CAMERA_MODEL = 50708
_CFA_PLANE_COLOR = 50710
_COLOR_MATRIX = (50721, 50722)
_CAMERA_CALIBRATION = (50723, 50724)
_ANALOG_BALANCE = 50727
_AS_SHOT_NEUTRAL = 50728
_AS_SHOT_WHITE_XY = 50729
_CALIBRATION_ILLUMINANT = (50778, 50779)
_ACTIVE_AREA = 50829
_MASKED_AREAS = 50830
_FORWARD_MATRIX = (50964, 50965)
_NOISE_PROFILE = 51041
_BLACK_LEVEL_REPEAT_DIM, _BLACK_LEVEL, _BLACK_LEVEL_DELTA_H, _BLACK_LEVEL_DELTA_V = 50713, 50714, 50715, 50716
_IMAGE_LENGTH, _IMAGE_WIDTH = 257, 256
# Tags of the raw IFD (which may be a SubIFD): they override IFD0's.
_RAW_IFD_TAGS = (_IMAGE_WIDTH, _IMAGE_LENGTH, _ACTIVE_AREA, _MASKED_AREAS, _NOISE_PROFILE, _BLACK_LEVEL_REPEAT_DIM,
                 _BLACK_LEVEL, _BLACK_LEVEL_DELTA_H, _BLACK_LEVEL_DELTA_V)
_CFA, _LINEAR_RAW = 32803, 34892
_ASCII, _RATIONAL, _SRATIONAL = 2, 5, 10

# Correlated colour temperature of the EXIF LightSource values DNG calibrations use
# (the Adobe DNG SDK's table); 0 for unknown or "other".
ILLUMINANT_KELVIN = {
    17: 2850, 3: 2850, 24: 3200, 23: 5000, 20: 5500, 1: 5500, 9: 5500, 4: 5500, 18: 5500,
    21: 6500, 19: 6500, 10: 6500, 22: 7500, 11: 7500, 12: 6400, 13: 5050, 14: 4150, 2: 4150,
    15: 3525, 16: 2925,
}
_ILLUMINANT_NAMES = {17: "StdA", 21: "D65", 23: "D50", 20: "D55", 22: "D75", 1: "Daylight", 3: "Tungsten",
                     4: "Flash", 14: "CoolWhite"}
_D65_KELVIN = 6500
# Masked pixels needed for a read-noise estimate, and how far their median may lie from the black level.
MIN_MASKED_PIXELS = 256
_MASKED_BLACK_TOLERANCE = 0.05  # of the white - black range


@dataclass(frozen=True)
class SensorProfile:
    """A camera's sensor as its raw file describes it (see the module docstring).

    ``color_matrix`` is camera (white-balanced) -> linear sRGB, rows summing to 1;
    ``shot_noise``/``read_noise`` are variances per unit of normalised raw signal,
    None when the file gives no way to know them. ``sources`` maps each field to
    ``read: ...``, ``estimated: ...`` or ``default: ...``.
    """

    camera: str
    pattern: str
    black_level: tuple[float, float, float, float]
    white_level: float
    wb_gains: tuple[float, float, float]
    color_matrix: tuple[tuple[float, float, float], ...] | None
    shot_noise: float | None = None
    read_noise: float | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def device_fields(self) -> dict[str, Any]:
        """The sensor keys of a device profile (``DeviceProfile`` of :mod:`instab.environments.devices`)."""
        out: dict[str, Any] = {"pattern": self.pattern, "black_level": self.black_level,
                               "white_level": self.white_level, "wb_gains": self.wb_gains,
                               "color_matrix": self.color_matrix}
        if self.shot_noise is not None:
            out["shot_noise"] = self.shot_noise
        if self.read_noise is not None:
            out["read_noise"] = self.read_noise
        return out


def xyz_to_cam_from_rgb(cam_to_rgb: Any) -> np.ndarray:
    """The XYZ -> camera matrix whose :attr:`RawMeta.cam_to_rgb` is ``cam_to_rgb`` (rows scaled to keep white)."""
    m = np.asarray(cam_to_rgb, dtype=np.float64)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)) or abs(np.linalg.det(m)) < 1e-12:
        raise ValueError(f"color_matrix: expected an invertible finite 3x3 matrix, got {m.tolist()}")
    out: np.ndarray = np.linalg.inv(m) @ np.linalg.inv(SRGB_TO_XYZ)
    return out


def read_sensor_profile(path: str | os.PathLike[str]) -> SensorProfile:
    """Read a camera's sensor (pattern, levels, colour matrix, white balance, noise) from a raw file.

    Parameters
    ----------
    path : str or os.PathLike
        A raw file LibRaw reads (DNG, NEF, CR2, CR3, ARW, RAF, ORF, RW2, PEF, ...).

    Returns
    -------
    SensorProfile
        The sensor and, in ``sources``, where each field came from.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`instab.isp.read_raw`: a missing file, one that is not a raw
        file or that LibRaw cannot decode, a sensor that is not RGB Bayer, and
        unusable colour tags.
    """
    import rawpy  # heavy native library (LibRaw): loaded on first use

    name = os.fspath(path)
    _, meta = read_raw(name)  # validates the file; pattern and levels as LibRaw reads them
    with open(name, "rb") as f:
        is_tiff = raw_format(f.read(16)) == "DNG/TIFF"
    tags = _dng_tags(name) if is_tiff else None
    with rawpy.imread(name) as raw:
        facts = _libraw_facts(raw)
    sources: dict[str, str] = {}
    dng = tags is not None
    sources["pattern"] = "read: CFAPattern" if dng else "read: LibRaw raw_pattern"
    black, sources["black_level"] = (_dng_black(tags, meta) if tags is not None
                                     else (meta.black_level, "read: LibRaw black_level_per_channel"))
    sources["white_level"] = "read: WhiteLevel" if dng else "read: LibRaw white_level"
    if tags is not None:
        xyz_to_cam, sources["color_matrix"] = _dng_xyz_to_cam(tags, name)
        gains, sources["wb_gains"] = _dng_wb_gains(tags, xyz_to_cam, meta, facts)
        camera = _text(tags.get(_UNIQUE_CAMERA_MODEL)) or _make_model(tags) or os.path.basename(name)
        noise = _dng_noise(tags, name)
    else:
        xyz_to_cam = None if meta.xyz_to_cam is None else np.asarray(meta.xyz_to_cam)
        sources["color_matrix"] = ("read: LibRaw's colour matrix for this camera model (Adobe's D65 matrix)"
                                   if xyz_to_cam is not None else
                                   "default: LibRaw has no colour matrix for this camera (instab's default sensor)")
        gains, sources["wb_gains"] = _libraw_wb_gains(meta, facts)
        camera = os.path.basename(name)  # rawpy does not expose the make and model
        noise = None
    try:
        sensor = meta.replace(black_level=black, wb_gains=gains,
                              xyz_to_cam=None if xyz_to_cam is None else _rows(xyz_to_cam))
    except ValueError as exc:
        raise ValueError(f"{name}: unusable colour metadata ({exc})") from None
    matrix = None if sensor.xyz_to_cam is None else _rows(sensor.cam_to_rgb)
    shot: float | None
    read: float | None
    if noise is not None:
        shot, read, sources["shot_noise"] = noise
        sources["read_noise"] = sources["shot_noise"]
    else:
        shot, sources["shot_noise"] = None, "default: no NoiseProfile in the file (the device profile's default)"
        read, sources["read_noise"] = _read_noise_from_masked(facts, sensor, tags)
    return SensorProfile(camera=camera, pattern=sensor.pattern, black_level=sensor.black_level,
                         white_level=sensor.white_level, wb_gains=sensor.wb_gains, color_matrix=matrix,
                         shot_noise=shot, read_noise=read, sources=sources)


def _rows(m: Any) -> tuple[tuple[float, float, float], ...]:
    return tuple((float(a), float(b), float(c)) for a, b, c in np.asarray(m, dtype=np.float64))


def _text(value: Any) -> str:
    return value.strip().strip("\x00").strip() if isinstance(value, str) else ""


def _make_model(tags: dict[int, Any]) -> str:
    return " ".join(t for t in (_text(tags.get(_MAKE)), _text(tags.get(_MODEL))) if t)


def _tag_value(tag: Any) -> Any:
    """A tifffile tag's value: text, or float64 numbers with (S)RATIONAL pairs divided out."""
    value = tag.value
    if isinstance(value, bytes) and int(tag.dtype) != _ASCII:  # BYTE/UNDEFINED tags come back as bytes
        return np.frombuffer(value, dtype=np.uint8).astype(np.float64)
    if isinstance(value, (str, bytes)):
        return value.decode("latin-1") if isinstance(value, bytes) else value
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if int(tag.dtype) in (_RATIONAL, _SRATIONAL):
        pairs = arr.reshape(-1, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            return pairs[:, 0] / pairs[:, 1]
    return arr


def _dng_tags(path: str) -> dict[int, Any] | None:
    """IFD0's tags with the raw IFD's (:data:`_RAW_IFD_TAGS`) on top; None for a TIFF that is not a DNG."""
    import tifffile  # loaded on first use: only DNG reading needs it

    try:
        with tifffile.TiffFile(path) as tif:
            ifd0 = tif.pages.first
            if _DNG_VERSION not in ifd0.tags:
                return None
            tags = {int(t.code): _tag_value(t) for t in ifd0.tags.values()}
            subifds = ifd0.pages if ifd0.subifds else None  # a camera's DNG keeps its raw image in a SubIFD
            candidates = [ifd0] + (list(subifds) if subifds is not None else [])
            for page in candidates:
                if not isinstance(page, tifffile.TiffPage):  # a TiffFrame: tifffile's reduced page, no tags
                    continue
                sub = page.tags.get(_NEW_SUBFILE_TYPE)
                photometric = page.tags.get(_PHOTOMETRIC)
                if (sub is None or int(sub.value) == 0) and photometric is not None \
                        and int(photometric.value) in (_CFA, _LINEAR_RAW):
                    tags.update({c: _tag_value(page.tags[c]) for c in _RAW_IFD_TAGS if c in page.tags})
                    break
            return tags
    except Exception:  # tifffile raises many types on odd TIFF-based raws: LibRaw's values are used then
        return None


def _dng_black(tags: dict[int, Any], meta: RawMeta) -> tuple[tuple[float, ...], str]:
    """Black level per 2x2 position from BlackLevel (one value, or a 2x2 repeat); else LibRaw's reduction.

    LibRaw may shift the black level by the masked pixels' mean; the profile keeps the camera's stated level.
    """
    values = np.asarray(tags.get(_BLACK_LEVEL, ()), dtype=np.float64).reshape(-1)
    dims = tuple(int(v) for v in np.asarray(tags.get(_BLACK_LEVEL_REPEAT_DIM, (1, 1))).reshape(-1))
    simple = _BLACK_LEVEL_DELTA_H not in tags and _BLACK_LEVEL_DELTA_V not in tags and np.all(np.isfinite(values))
    if simple and dims == (1, 1) and values.size == 1:
        return (float(values[0]),) * 4, "read: BlackLevel"
    if simple and dims == (2, 2) and values.size == 4:
        return tuple(float(v) for v in values), "read: BlackLevel (2x2)"
    return meta.black_level, "read: BlackLevel, as LibRaw reduces it to 2x2 positions"


def _plane_order(tags: dict[int, Any]) -> list[int]:
    """Index of the R, G and B colour planes in the DNG's per-plane tags (CFAPlaneColor; default 0, 1, 2)."""
    planes = [int(v) for v in np.asarray(tags.get(_CFA_PLANE_COLOR, (0, 1, 2))).reshape(-1)]
    if len(planes) != 3 or sorted(planes) != [0, 1, 2]:
        raise ValueError(f"CFAPlaneColor {planes} is not an RGB sensor")
    return [planes.index(c) for c in (0, 1, 2)]


def _dng_xyz_to_cam(tags: dict[int, Any], name: str) -> tuple[np.ndarray | None, str]:
    """XYZ -> camera (R, G, B rows) of the calibration closest to D65, and its source."""
    order = _plane_order(tags)
    options = []
    for k in (0, 1):
        if _COLOR_MATRIX[k] not in tags:
            continue
        cm = np.asarray(tags[_COLOR_MATRIX[k]], dtype=np.float64)
        if cm.size != 9 or not np.all(np.isfinite(cm)):
            raise ValueError(f"{name}: ColorMatrix{k + 1} is not a 3x3 matrix of numbers")
        illuminant = int(np.asarray(tags.get(_CALIBRATION_ILLUMINANT[k], (0,))).reshape(-1)[0])
        options.append((abs(ILLUMINANT_KELVIN.get(illuminant, 0) - _D65_KELVIN), k, illuminant, cm.reshape(3, 3)))
    if not options:
        return None, "default: the DNG has no ColorMatrix (instab's default sensor)"
    _, k, illuminant, cm = min(options, key=lambda o: (o[0], -o[1]))
    m = cm
    used = [f"ColorMatrix{k + 1} ({_ILLUMINANT_NAMES.get(illuminant, f'illuminant {illuminant}')})"]
    cc = tags.get(_CAMERA_CALIBRATION[k])
    if cc is not None and np.asarray(cc).size == 9:
        m = np.asarray(cc, dtype=np.float64).reshape(3, 3) @ m
        used.append(f"CameraCalibration{k + 1}")
    ab = tags.get(_ANALOG_BALANCE)
    if ab is not None and np.asarray(ab).size == 3:
        m = np.diag(np.asarray(ab, dtype=np.float64)) @ m
        used.append("AnalogBalance")
    note = f"; ForwardMatrix{k + 1} present, not used" if _FORWARD_MATRIX[k] in tags else ""
    return m[order], "read: " + " x ".join(reversed(used)) + note


def _gains_from_neutral(neutral: Any) -> tuple[float, float, float] | None:
    n = np.asarray(neutral, dtype=np.float64).reshape(-1)
    if n.size != 3 or not np.all(np.isfinite(n)) or np.any(n <= 0):
        return None
    return (float(n[1] / n[0]), 1.0, float(n[1] / n[2]))


def _dng_wb_gains(tags: dict[int, Any], xyz_to_cam: np.ndarray | None, meta: RawMeta,
                  facts: dict[str, Any]) -> tuple[tuple[float, float, float], str]:
    neutral = np.asarray(tags.get(_AS_SHOT_NEUTRAL, ()), dtype=np.float64).reshape(-1)
    if neutral.size == 3:
        gains = _gains_from_neutral(neutral[_plane_order(tags)])
        if gains is not None:
            return gains, "read: AsShotNeutral"
    if _AS_SHOT_WHITE_XY in tags and xyz_to_cam is not None and np.asarray(tags[_AS_SHOT_WHITE_XY]).size == 2:
        x, y = (float(v) for v in np.asarray(tags[_AS_SHOT_WHITE_XY]).reshape(-1))
        if y > 0:
            gains = _gains_from_neutral(xyz_to_cam @ np.array([x / y, 1.0, (1.0 - x - y) / y]))
            if gains is not None:
                return gains, "read: AsShotWhiteXY (through the colour matrix)"
    return _libraw_wb_gains(meta, facts)


def _libraw_wb_gains(meta: RawMeta, facts: dict[str, Any]) -> tuple[tuple[float, float, float], str]:
    if facts["camera_wb"] is not None:
        return facts["camera_wb"], "read: the camera's as-shot white balance (LibRaw camera_whitebalance)"
    if facts["daylight_wb"] is not None:
        return facts["daylight_wb"], "estimated: LibRaw's daylight white balance for this camera (no as-shot one)"
    return meta.wb_gains, "default: no white balance in the file (1, 1, 1)"


def _rgb_gains(wb: Sequence[float], desc: str) -> tuple[float, float, float] | None:
    """R/G, 1, B/G from LibRaw's per-colour multipliers (indexed by color_desc), None when unset."""
    if not all(ch in desc for ch in "RGB") or len(wb) < len(desc.rstrip("\x00")):
        return None
    r, g, b = (float(wb[desc.index(ch)]) for ch in "RGB")
    if min(r, g, b) <= 0 or not np.all(np.isfinite((r, g, b))):
        return None
    return (r / g, 1.0, b / g)


def _libraw_facts(raw: Any) -> dict[str, Any]:
    """What LibRaw says beyond :func:`read_raw`: white balances, margins and the masked pixels around the image."""
    desc = raw.color_desc.decode("ascii", "replace")
    s = raw.sizes
    full = np.array(raw.raw_image, copy=True)  # LibRaw's buffer is freed when the file is closed
    return {
        "camera_wb": _rgb_gains(list(raw.camera_whitebalance), desc),
        "daylight_wb": _rgb_gains(list(raw.daylight_whitebalance), desc),
        "margins": (int(s.top_margin), int(s.left_margin), int(s.height), int(s.width)),
        "full": full,
    }


def _dng_noise(tags: dict[int, Any], name: str) -> tuple[float, float, str] | None:
    """(shot, read, source) from the NoiseProfile tag (planes averaged), None without the tag."""
    if _NOISE_PROFILE not in tags:
        return None
    values = np.asarray(tags[_NOISE_PROFILE], dtype=np.float64).reshape(-1)
    if values.size not in (2, 6) or not np.all(np.isfinite(values)) or np.any(values[0::2] <= 0):
        raise ValueError(f"{name}: NoiseProfile must be (S, O) pairs with S > 0, one pair or one per colour plane")
    pairs = values.reshape(-1, 2)
    shot, read = float(pairs[:, 0].mean()), float(max(pairs[:, 1].mean(), 0.0))
    per_plane = "" if len(pairs) == 1 else f", the mean of {len(pairs)} colour planes"
    return shot, read, f"read: NoiseProfile{per_plane}"


def _masked_rects(facts: dict[str, Any], tags: dict[int, Any] | None) -> list[tuple[int, int, int, int]]:
    """(top, left, bottom, right) rectangles of optically black pixels in the full raw image."""
    full = facts["full"]
    if tags is not None:
        size = (tags.get(_IMAGE_LENGTH), tags.get(_IMAGE_WIDTH))
        rects = np.asarray(tags.get(_MASKED_AREAS, ()), dtype=np.float64).reshape(-1)
        if None in size or full.shape != tuple(int(np.asarray(v).reshape(-1)[0]) for v in size) or rects.size % 4:
            return []  # LibRaw's raw image is not the raw IFD's: the coordinates would not match
        return [tuple(int(v) for v in r) for r in rects.reshape(-1, 4)]  # type: ignore[misc]
    top, left, height, width = facts["margins"]
    out = []
    if top >= 4:
        out.append((0, 0, top, full.shape[1]))
    if left >= 4:
        out.append((top, 0, top + height, left))
    return out


def _read_noise_from_masked(facts: dict[str, Any], meta: RawMeta,
                            tags: dict[int, Any] | None) -> tuple[float | None, str]:
    """Read-noise variance (normalised) from the masked pixels: the median over the four 2x2 positions."""
    full = facts["full"]
    rects = [r for r in _masked_rects(facts, tags)
             if 0 <= r[0] < r[2] <= full.shape[0] and 0 <= r[1] < r[3] <= full.shape[1]]
    black = float(np.mean(meta.black_level))
    scale = meta.white_level - black
    per_position: list[list[np.ndarray]] = [[] for _ in range(4)]
    for top, left, bottom, right in rects:
        for k in range(4):
            dy, dx = divmod(k, 2)
            block = full[top + (top + dy) % 2 : bottom : 2, left + (left + dx) % 2 : right : 2]
            per_position[k].append(block.astype(np.float64).reshape(-1))
    values = [np.concatenate(v) if v else np.empty(0) for v in per_position]
    count = sum(v.size for v in values)
    what = "DNG MaskedAreas" if tags is not None else "the sensor margins LibRaw reports"
    if count < MIN_MASKED_PIXELS or min(v.size for v in values) == 0:
        return None, "default: no NoiseProfile and no masked pixels in the file (the device profile's default)"
    if abs(float(np.median(np.concatenate(values))) - black) > _MASKED_BLACK_TOLERANCE * scale:
        return None, f"default: no NoiseProfile; {what} are not at the black level (the device profile's default)"
    variances = [_robust_variance(v) for v in values]
    return float(np.median(variances)) / scale**2, f"estimated: {count} masked pixels ({what})"


def _robust_variance(v: np.ndarray) -> float:
    """Variance without outliers (hot pixels): values within 6 robust sigmas of the median."""
    med = np.median(v)
    mad = 1.4826 * float(np.median(np.abs(v - med)))
    kept = v[np.abs(v - med) <= 6 * mad] if mad > 0 else v
    return float(kept.var())


__all__ = ["ILLUMINANT_KELVIN", "MIN_MASKED_PIXELS", "SensorProfile", "read_sensor_profile", "xyz_to_cam_from_rgb"]
