"""The camera raw pipeline (unprocess, develop) and raw files (DNG writing, LibRaw reading)."""

from __future__ import annotations

from instab.isp.dng import (
    read_raw,
    write_dng,
)
from instab.isp.pipeline import (
    DEMOSAICS,
    GAMMAS,
    PATTERNS,
    TONES,
    RawMeta,
    auto_wb_gains,
    develop,
    nikon_meta,
    pattern_colours,
    psnr,
    read_headerless,
    unprocess,
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
