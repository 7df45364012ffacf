"""int8 re-quantization of a fine-tuned float model: static QDQ with ONNX Runtime, calibrated on user images.

Edge devices run int8, so a fine-tuned float model is only half the answer:
:func:`quantize_int8` turns it into an int8 QDQ graph (weights int8, activations
uint8, per-tensor by default like the shared ST model) whose activation ranges
are calibrated (MinMax) on the user's own images.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from instab import models as _models
from instab.train.dataset import InputFormat


def quantize_int8(
    model,
    calibration: np.ndarray,
    batch_size: int = 16,
    per_channel: bool = False,
    method: str = "minmax",
):
    """Static int8 QDQ copy of a float classifier (an :class:`instab.models.Model`).

    Args:
        model: the float model (its spec says how images become input tensors).
        calibration: uint8 [N, H, W, 3] images at the model's input size (e.g. the
            user's training photos, already resized and cropped); N >= 1.
        batch_size: images per calibration batch.
        per_channel: per-channel weight scales (per-tensor by default).
        method: ``minmax``, ``entropy`` or ``percentile`` activation calibration.

    Returns an :class:`instab.models.Model` with the same spec, named ``<name>-int8``.
    """
    # Imported here: onnxruntime.quantization loads its calibration tools (slow), needed only to quantize.
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not isinstance(model, _models.Model):
        raise TypeError(f"model: expected an instab.models.Model, got {type(model).__name__}")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f"method: expected one of {sorted(methods)}, got {method!r}")
    calibration = np.asarray(calibration)
    size = model.spec.size
    shape_ok = calibration.ndim == 4 and calibration.shape[1:] == (size, size, 3) and len(calibration) > 0
    if calibration.dtype != np.uint8 or not shape_ok:
        raise ValueError(
            f"calibration: expected uint8 [N, {size}, {size}, 3] images (N >= 1), "
            f"got {calibration.dtype} {calibration.shape}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    fmt = InputFormat.from_model(model.proto, model.spec)
    name = model.spec.input_name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(range(0, len(calibration), batch_size))

        def get_next(self):
            start = next(self.batches, None)
            if start is None:
                return None
            return {name: fmt.to_input(calibration[start : start + batch_size])}

    with tempfile.TemporaryDirectory(prefix="instab-quant-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model.proto, str(src))
        quantize_static(
            str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=methods[method],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        proto = onnx.load(str(dst))
    return _models.Model(proto, model.spec, model.name + "-int8")

__all__ = [
    "quantize_int8",
]
