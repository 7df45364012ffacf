"""The camera raw pipeline (unprocess, develop) and raw files (DNG writing, LibRaw reading)."""

from __future__ import annotations

from instab.isp.pipeline import (
    RawMeta,
    nikon_meta,
    unprocess,
    develop,
    auto_wb_gains,
    read_headerless,
    psnr,
    pattern_colours,
    PATTERNS,
    DEMOSAICS,
    GAMMAS,
    TONES,
)
from instab.isp.dng import (
    read_raw,
    write_dng,
)

__all__ = [
    "DEMOSAICS",
    "GAMMAS",
    "PATTERNS",
    "RawMeta",
    "TONES",
    "auto_wb_gains",
    "develop",
    "nikon_meta",
    "pattern_colours",
    "psnr",
    "read_headerless",
    "read_raw",
    "unprocess",
    "write_dng",
]
