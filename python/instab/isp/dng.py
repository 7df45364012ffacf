"""DNG files for Bayer mosaics (written with tifffile) and reading raw files with rawpy/LibRaw."""

from __future__ import annotations

import io
import os
from fractions import Fraction
from typing import IO, Any

import numpy as np

from instab.isp.pipeline import PATTERNS, SRGB_TO_XYZ, RawMeta, pattern_colours

# Tag ids from the DNG 1.4 specification.
_MAKE = 271
_MODEL = 272
_CFA_REPEAT_PATTERN_DIM = 33421
_CFA_PATTERN = 33422
_DNG_VERSION = 50706
_DNG_BACKWARD_VERSION = 50707
_UNIQUE_CAMERA_MODEL = 50708
_CFA_PLANE_COLOR = 50710
_CFA_LAYOUT = 50711
_BLACK_LEVEL_REPEAT_DIM = 50713
_BLACK_LEVEL = 50714
_WHITE_LEVEL = 50717
_COLOR_MATRIX_1 = 50721
_AS_SHOT_NEUTRAL = 50728
_CALIBRATION_ILLUMINANT_1 = 50778
_D65 = 21
_RATIONAL, _SRATIONAL, _SHORT, _LONG, _BYTE = 5, 10, 3, 4, 1


def _rational(values: Any, signed: bool = False) -> list[int]:
    """Flattened (numerator, denominator) pairs, as tifffile expects for (S)RATIONAL tags."""
    out: list[int] = []
    for v in np.asarray(values, dtype=np.float64).reshape(-1):
        f = Fraction(float(v)).limit_denominator(1_000_000)
        if not signed and f < 0:
            raise ValueError(f"write_dng: {v} must not be negative")
        out += [f.numerator, f.denominator]
    return out


def write_dng(path: str | os.PathLike[str] | IO[bytes], mosaic: np.ndarray, meta: Any) -> None:
    """Write a Bayer mosaic as a DNG that LibRaw (rawpy) and other raw developers read.

    path: a file name or a binary file object (e.g. ``io.BytesIO``).
    mosaic: uint16 ``[H, W]`` raw values.
    meta: an :class:`instab.isp.RawMeta`: CFA pattern, black and white level,
        D65 colour matrix (ColorMatrix1; identity-derived when None) and
        AsShotNeutral from the white-balance gains.
    """

    if not isinstance(meta, RawMeta):
        raise TypeError(f"meta: expected a RawMeta, got {type(meta).__name__}")
    m = np.asarray(mosaic)
    if m.dtype != np.uint16:
        raise TypeError(f"mosaic: expected uint16 raw values, got dtype {m.dtype}")
    if m.ndim != 2 or m.shape[0] < 2 or m.shape[1] < 2:
        raise ValueError(f"mosaic: expected a 2-D mosaic of at least 2x2, got shape {m.shape}")
    import tifffile  # loaded on first use: only DNG writing needs it

    if meta.xyz_to_cam is not None:
        xyz_to_cam = np.asarray(meta.xyz_to_cam)
    else:
        # A camera that sees linear sRGB: its XYZ -> camera matrix is XYZ -> sRGB.
        xyz_to_cam = np.linalg.inv(SRGB_TO_XYZ)
    black = list(meta.black_level)
    integral = all(float(b).is_integer() for b in black) and float(meta.white_level).is_integer()
    # (code, dtype, count, value, writeonce), as tifffile's extratags; values are mixed
    tags: list[tuple[int, int | str, int, Any, bool]] = [
        (_MAKE, "s", 0, "instab", True),
        (_MODEL, "s", 0, "simulated sensor", True),
        (_DNG_VERSION, _BYTE, 4, (1, 4, 0, 0), True),
        (_DNG_BACKWARD_VERSION, _BYTE, 4, (1, 1, 0, 0), True),
        (_UNIQUE_CAMERA_MODEL, "s", 0, "instab simulated sensor", True),
        (_CFA_REPEAT_PATTERN_DIM, _SHORT, 2, (2, 2), True),
        (_CFA_PATTERN, _BYTE, 4, tuple(pattern_colours(meta.pattern)), True),
        (_CFA_PLANE_COLOR, _BYTE, 3, (0, 1, 2), True),
        (_CFA_LAYOUT, _SHORT, 1, (1,), True),
        (_BLACK_LEVEL_REPEAT_DIM, _SHORT, 2, (2, 2), True),
        (_BLACK_LEVEL, _LONG, 4, tuple(int(b) for b in black), True)
        if integral
        else (_BLACK_LEVEL, _RATIONAL, 4, _rational(black), True),
        (_WHITE_LEVEL, _LONG, 1, (int(round(meta.white_level)),), True),
        (_COLOR_MATRIX_1, _SRATIONAL, 9, _rational(xyz_to_cam, signed=True), True),
        (_CALIBRATION_ILLUMINANT_1, _SHORT, 1, (_D65,), True),
        (_AS_SHOT_NEUTRAL, _RATIONAL, 3, _rational(meta.as_shot_neutral), True),
    ]
    tifffile.imwrite(
        path, np.ascontiguousarray(m), photometric=32803, extratags=tags, metadata=None,
    )


# Signatures of the raw containers read_raw accepts: (format, offset, magic bytes).
# A file without one is refused rather than left to LibRaw, which guesses a
# format from the size of a headerless file and returns nonsense.
_TIFF_RAW = "DNG/TIFF"  # DNG and the TIFF-based raws: NEF, NRW, CR2, ARW, SR2, PEF, ERF, 3FR, ...
RAW_SIGNATURES: tuple[tuple[str, int, bytes], ...] = (
    (_TIFF_RAW, 0, b"II*\x00"),
    (_TIFF_RAW, 0, b"MM\x00*"),
    ("CR3", 4, b"ftypcrx "),
    ("RAF", 0, b"FUJIFILM"),
    ("ORF", 0, b"IIRO"),
    ("ORF", 0, b"IIRS"),
    ("ORF", 0, b"MMOR"),
    ("RW2", 0, b"IIU\x00"),
)


def raw_format(header: bytes) -> str | None:
    """The raw format whose signature ``header`` (a file's first bytes, 12 or more) starts with, or None.

    Recognised: TIFF-based raws (DNG, NEF, NRW, CR2, ARW, SR2, PEF, ERF, 3FR and
    other ``II*\\0`` / ``MM\\0*`` files), CR3, RAF, ORF and RW2; see :data:`RAW_SIGNATURES`.
    """
    for fmt, offset, magic in RAW_SIGNATURES:
        if header[offset : offset + len(magic)] == magic:
            return fmt
    return None


def read_raw(path: str | os.PathLike[str] | bytes | IO[bytes]) -> tuple[np.ndarray, Any]:
    """Read a Bayer raw file with rawpy (LibRaw): DNG, NEF, CR2, CR3, ARW, RAF, ORF, RW2, PEF, ...

    Parameters
    ----------
    path : str, os.PathLike, bytes or binary file object
        A file name, the file's contents, or an open binary file.

    Returns
    -------
    mosaic, meta
        The visible uint16 ``[H, W]`` mosaic and a :class:`instab.isp.RawMeta`
        (pattern, per-position black level, white level, camera white balance,
        colour matrix).

    Raises
    ------
    FileNotFoundError
        If ``path`` names no file ("... does not exist").
    ValueError
        With a message naming the file that does not depend on files read
        before: for a file without a recognised raw signature (see
        :func:`raw_format`; headerless mosaics go through
        :func:`instab.isp.read_headerless` with explicit geometry), a file LibRaw
        cannot decode, and sensors that are not 2x2 RGB Bayer (X-Trans, Foveon,
        a corrupt colour-filter pattern).
    TypeError
        If ``path`` is none of the above.
    """
    import rawpy  # heavy native library (LibRaw): loaded on first use

    name, source, header = _raw_source(path)
    fmt = raw_format(header)
    if fmt is None:
        raise ValueError(
            f"{name}: not a recognised raw file (no DNG/TIFF, CR3, RAF, ORF or RW2 signature); "
            "read a headerless mosaic with instab.isp.read_headerless(path, height, width)"
        )
    try:
        with rawpy.imread(source) as raw:
            return _bayer_mosaic(raw, name)
    except rawpy.LibRawError as exc:
        # LibRaw's own error (class and text) can depend on files read before: keep it as the cause only.
        raise ValueError(f"{name}: LibRaw cannot decode this {fmt} file (corrupt or unsupported)") from exc
    except NotImplementedError as exc:  # rawpy: a colour-filter layout it cannot describe
        raise ValueError(f"{name}: {_NOT_BAYER}") from exc


_NOT_BAYER = "not a 2x2 RGB Bayer sensor (X-Trans, Foveon, or a corrupt colour-filter pattern)"


def _raw_source(path: Any) -> tuple[str, Any, bytes]:
    """(name for messages, what rawpy.imread takes, the first 16 bytes) of a path, bytes or binary file."""
    if isinstance(path, (str, os.PathLike)):
        name = os.fspath(path)
        if not os.path.exists(name):
            raise FileNotFoundError(f"{name} does not exist")
        if not os.path.isfile(name):
            raise ValueError(f"{name}: not a file")
        with open(name, "rb") as f:
            return name, name, f.read(16)
    if isinstance(path, (bytes, bytearray, memoryview)):
        data = bytes(path)
        return "raw bytes", io.BytesIO(data), data[:16]
    if hasattr(path, "read"):
        data = path.read()
        if not isinstance(data, bytes):
            raise TypeError(f"path: expected a binary file, got one that reads {type(data).__name__}")
        return str(getattr(path, "name", "raw file object")), io.BytesIO(data), data[:16]
    raise TypeError(f"path: expected a file name, bytes or a binary file, got {type(path).__name__}")


def _bayer_mosaic(raw: Any, name: str) -> tuple[np.ndarray, RawMeta]:
    """The visible mosaic and its RawMeta from an open rawpy image; ValueError when it is not RGB Bayer."""
    # A Flat raw is a mosaic; Stack raws (linear DNG, sRAW) are already demosaiced.
    pattern_idx = np.asarray(raw.raw_pattern) if raw.raw_type.name == "Flat" else None
    desc = raw.color_desc.decode("ascii", "replace")
    if pattern_idx is None or pattern_idx.shape != (2, 2) or int(pattern_idx.max()) >= len(desc):
        raise ValueError(f"{name}: {_NOT_BAYER}")
    letters = [desc[int(i)] for i in pattern_idx.reshape(-1)]
    pattern = "".join(letters).lower()
    if pattern not in PATTERNS:
        raise ValueError(f"{name}: {_NOT_BAYER}")
    mosaic = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)
    bl = list(raw.black_level_per_channel)
    b = [float(bl[int(i)]) for i in pattern_idx.reshape(-1)]
    black = (b[0], b[1], b[2], b[3])  # the pattern is 2x2 (checked above)
    white = float(raw.white_level)
    wbc = np.asarray(raw.camera_whitebalance, dtype=np.float64)
    # color indices: the first index with each letter
    idx = {ch: desc.index(ch) for ch in "RGB"}
    if wbc[idx["G"]] > 0 and wbc[idx["R"]] > 0 and wbc[idx["B"]] > 0:
        gains = (wbc[idx["R"]] / wbc[idx["G"]], 1.0, wbc[idx["B"]] / wbc[idx["G"]])
    else:
        gains = (1.0, 1.0, 1.0)
    xyz_to_cam = _colour_matrix(raw, [idx["R"], idx["G"], idx["B"]])
    try:
        rows = None if xyz_to_cam is None else _matrix_rows(xyz_to_cam)
        meta = RawMeta(pattern=pattern, black_level=black, white_level=white, wb_gains=gains, xyz_to_cam=rows)
    except ValueError as exc:  # levels out of range: a corrupt file (the values may be LibRaw's leftovers)
        raise ValueError(f"{name}: unusable raw metadata (black or white level out of range)") from exc
    return mosaic, meta


def _matrix_rows(m: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    """A three-column matrix as RawMeta's rows (ValueError for another column count)."""
    return tuple((float(x), float(y), float(z)) for x, y, z in m)


def _colour_matrix(raw: Any, rgb_idx: list[int]) -> np.ndarray | None:
    """XYZ -> camera for R, G, B, from LibRaw's camera matrix, or from its camera -> sRGB matrix.

    LibRaw leaves ``rgb_xyz_matrix`` empty for DNGs but fills ``color_matrix``
    (camera -> sRGB); inverting it gives sRGB -> camera, and XYZ -> camera up to
    the row scaling that :attr:`RawMeta.rgb_to_cam` normalises away.
    """

    cam_xyz = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[rgb_idx]
    if np.any(cam_xyz) and abs(np.linalg.det(cam_xyz @ SRGB_TO_XYZ)) > 1e-12:
        return cam_xyz
    rgb_cam = np.asarray(raw.color_matrix, dtype=np.float64)[:, rgb_idx]
    if np.any(rgb_cam) and abs(np.linalg.det(rgb_cam)) > 1e-12 and not np.allclose(rgb_cam, np.eye(3)):
        return np.linalg.inv(rgb_cam) @ np.linalg.inv(SRGB_TO_XYZ)
    return None

__all__ = [
    "RAW_SIGNATURES",
    "raw_format",
    "read_raw",
    "write_dng",
]
