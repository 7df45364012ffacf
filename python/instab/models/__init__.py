"""Image classifier models: ONNX graphs with a spec of what their input and output mean.

See :mod:`instab.models.loading`.
"""

from __future__ import annotations

from instab.models.loading import (
    EFFICIENTNET_LITE0,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODELS_DIR_ENV,
    Model,
    ModelSpec,
    builtin_names,
    cache_dir,
    dequantize,
    infer_spec,
    load,
    scale_offset_from_mean_std,
    search_path,
)

__all__ = [
    "EFFICIENTNET_LITE0",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS_DIR_ENV",
    "Model",
    "ModelSpec",
    "builtin_names",
    "cache_dir",
    "dequantize",
    "infer_spec",
    "load",
    "scale_offset_from_mean_std",
    "search_path",
]
