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
    companion,
    dequantize,
    infer_spec,
    load,
    model_file,
    scale_offset_from_mean_std,
    search_path,
)
from instab.models.precision import to_fp16
from instab.models.tflite import TFLiteModel

__all__ = [
    "EFFICIENTNET_LITE0",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS_DIR_ENV",
    "Model",
    "ModelSpec",
    "TFLiteModel",
    "builtin_names",
    "cache_dir",
    "companion",
    "dequantize",
    "infer_spec",
    "load",
    "model_file",
    "scale_offset_from_mean_std",
    "search_path",
    "to_fp16",
]
