"""The camera raw pipeline (unprocess, develop, demosaic) and raw files (DNG writing, LibRaw reading, raw input)."""

from __future__ import annotations

from instab.isp.demosaicing import (
    MOSAIC_DTYPES,
    demosaic,
)
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
from instab.isp.rawfile import (
    RAW_SUFFIXES,
    RawImage,
    decode,
    develop_default,
    read_raw_image,
)

__all__ = [
    "DEMOSAICS",
    "GAMMAS",
    "MOSAIC_DTYPES",
    "PATTERNS",
    "RAW_SUFFIXES",
    "RawImage",
    "RawMeta",
    "TONES",
    "auto_wb_gains",
    "decode",
    "demosaic",
    "develop",
    "develop_default",
    "nikon_meta",
    "pattern_colours",
    "psnr",
    "read_headerless",
    "read_raw",
    "read_raw_image",
    "unprocess",
    "write_dng",
]
