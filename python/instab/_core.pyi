"""Type stubs for instab's compiled core. Users should call the public modules."""

from typing import Any

import numpy as np
import numpy.typing as npt

def instability(
    predictions: npt.NDArray[Any],
    labels: npt.NDArray[np.int32],
    k: int,
    n_classes: int,
    threads: int,
) -> dict[str, Any]: ...
def topk(
    scores: npt.NDArray[np.floating[Any]], k: int, threads: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating[Any]]]: ...
def distort_chain(
    images: npt.NDArray[Any],
    kinds: npt.NDArray[np.int32],
    seeds: npt.NDArray[np.uint64],
    lo: npt.NDArray[np.float64],
    hi: npt.NDArray[np.float64],
    first_index: int,
    out_dtype: str,
    threads: int,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64]]: ...
def philox4x32(
    seed: int, streams: npt.NDArray[np.uint64], counters: npt.NDArray[np.uint64]
) -> npt.NDArray[np.uint32]: ...
def philox_uniform(
    seed: int, streams: npt.NDArray[np.uint64], counters: npt.NDArray[np.uint64]
) -> npt.NDArray[np.float64]: ...
def isp_unprocess(
    images: npt.NDArray[np.uint8],
    pattern: str,
    rgb_to_cam: npt.NDArray[np.float64],
    inv_gains: tuple[float, float, float] | list[float],
    highlight_safe: bool,
    tone: str,
    gamma: str,
    black: tuple[float, float, float, float] | list[float],
    white: float,
    shot_noise: float,
    read_noise: float,
    seed: int,
    first_index: int,
    threads: int = 0,
) -> npt.NDArray[np.uint16]: ...
def isp_develop(
    mosaic: npt.NDArray[np.uint16] | npt.NDArray[np.float32],
    pattern: str,
    black: tuple[float, float, float, float] | list[float],
    white: float,
    gains: tuple[float, float, float] | list[float],
    cam_to_rgb: npt.NDArray[np.float64],
    demosaic: str,
    gamma: str,
    tone: str,
    out_dtype: str,
    threads: int = 0,
) -> npt.NDArray[Any]: ...
def isp_demosaic(
    mosaic: npt.NDArray[np.uint8] | npt.NDArray[np.uint16],
    cfa: list[int],
    method: str,
    out_dtype: str,
    threads: int = 0,
) -> npt.NDArray[Any]: ...
def unsharp(images: npt.NDArray[np.uint8], amount: float, threads: int = 0) -> npt.NDArray[np.uint8]: ...
def preprocess(
    images: list[npt.NDArray[np.uint8]] | tuple[npt.NDArray[np.uint8], ...],
    out_h: int,
    out_w: int,
    short_side: int,
    layout: str,
    dtype: str,
    lut: npt.NDArray[np.float32] | None,
    threads: int = 0,
) -> npt.NDArray[Any]: ...
def preprocess_plan(
    height: int, width: int, short_side: int, out_h: int, out_w: int
) -> tuple[int, int, int, int]: ...
