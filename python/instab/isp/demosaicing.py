"""Demosaicing alone, in integers: Bayer mosaic (uint8/uint16) -> RGB.

Unlike :func:`instab.isp.develop` (levels, white balance, colour matrix and
transfer function, all in float), this only interpolates the two missing
colours of every pixel, exactly, in the mosaic's own integers: each output is a
rational ``num / den`` of the input values (``den`` = 4 for bilinear, 16 for
Malvar-He-Cutler, 32 for Hamilton-Adams, whose interpolated green is kept as
eighths, clipped to ``[0, 8 * peak]``). Integer output rounds half up,
``floor((num + den / 2) / den)``, clipped to ``[0, peak]``; float32 output is
``num / den`` rounded once. Borders mirror without repeating the edge pixel
(reflect-101), as in develop. The exact formulas are in ``tests/reference.py``
(``demosaic_reference``), which the kernel matches bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from instab._native import core
from instab._shared.validation import check_choice, check_threads
from instab.isp.pipeline import DEMOSAICS, PATTERNS, pattern_colours

MOSAIC_DTYPES = ("uint8", "uint16")


def demosaic(
    mosaic: Any, pattern: str, method: str = "bilinear", *, out_dtype: str | None = None, threads: int | None = None
) -> np.ndarray:
    """Interpolate the missing colours of a Bayer mosaic, exactly, in integers.

    Parameters
    ----------
    mosaic : array_like
        uint8 or uint16 raw values, ``[H, W]`` or ``[N, H, W]`` (H, W >= 2).
        No levels are applied: the output is in the mosaic's units.
    pattern : {"rggb", "grbg", "gbrg", "bggr"}
        The colours of the top-left 2x2 block, row by row.
    method : {"bilinear", "malvar", "ha"}, default "bilinear"
        Bilinear; Malvar, He and Cutler's gradient-corrected linear filters
        (ICASSP 2004); or Hamilton and Adams' edge-directed interpolation.
    out_dtype : {None, "uint8", "uint16", "float32"}, optional
        None (default) or the mosaic's dtype for integers rounded half up and
        clipped to the dtype's range; "float32" for the exact values (which
        Malvar and Hamilton-Adams may take slightly outside that range).
    threads : int, optional
        Worker threads over rows: None (default) for all cores, else an int in
        ``1..MAX_THREADS``. The result does not depend on it.

    Returns
    -------
    numpy.ndarray
        ``[..., H, W, 3]`` RGB, in ``out_dtype``.

    Raises
    ------
    TypeError
        If ``mosaic`` is not uint8 or uint16, or ``threads`` is not an int.
    ValueError
        If ``mosaic`` is not 2-D or 3-D or smaller than 2x2, or ``pattern``,
        ``method`` or ``out_dtype`` is not one of the choices.

    Examples
    --------
    >>> import numpy as np
    >>> from instab import isp
    >>> mosaic = np.array([[10, 20, 10, 20], [30, 40, 30, 40]], np.uint16)
    >>> isp.demosaic(mosaic, "rggb")[0, 1].tolist()  # a green pixel: R from its row, B from below
    [10, 20, 40]
    """
    pattern = check_choice(pattern, PATTERNS, "pattern")
    method = check_choice(method, DEMOSAICS, "method")
    nthreads = check_threads(threads)
    a = np.asarray(mosaic)
    if a.dtype.name not in MOSAIC_DTYPES:
        raise TypeError(f"mosaic: expected uint8 or uint16 raw values, got dtype {a.dtype}")
    if out_dtype is None:
        out_dtype = a.dtype.name
    out_dtype = check_choice(out_dtype, (a.dtype.name, "float32"), "out_dtype")
    if a.ndim not in (2, 3):
        raise ValueError(f"mosaic: expected [H, W] or [N, H, W], got shape {a.shape}")
    batch = np.ascontiguousarray(a if a.ndim == 3 else a[None])
    out = core.isp_demosaic(batch, pattern_colours(pattern), method, out_dtype, nthreads)
    return out if a.ndim == 3 else out[0]


__all__ = [
    "MOSAIC_DTYPES",
    "demosaic",
]
