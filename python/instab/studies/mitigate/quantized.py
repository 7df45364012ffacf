"""int8 copies of the input, plain and stabilized models, quantized alike and measured like the float ones.

Every model is re-quantized by the same recipe (static QDQ, per-channel weight
scales, activations calibrated on training views of both devices), so that the
int8 rows compare like with like; the recipe is why the gain survives: per-tensor
scales and single-device calibration lose most of it (see docs/mitigation.md).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from instab import models
from instab._shared.progress import Progress
from instab.studies.mitigate.evaluate import EvaluationSet, evaluate_model
from instab.studies.mitigation.finetune import FineTuner
from instab.studies.mitigation.int8 import quiet_onnxruntime_quantization
from instab.train.quantize import quantize_int8


def quantize_and_evaluate(tuner: FineTuner, float_models: dict[str, models.Model], calibration: np.ndarray,
                          data: EvaluationSet, log: Progress) -> dict[str, tuple[models.Model, dict[str, Any]]]:
    """``{name: (int8 model, its measures)}`` for each float model."""
    out = {}
    for name, model in float_models.items():
        t0 = time.perf_counter()
        with quiet_onnxruntime_quantization():
            q = quantize_int8(model, calibration, per_channel=True)
        out[name] = (q, evaluate_model(tuner, q, data))
        log(f"  int8 {name}: quantized and measured in {time.perf_counter() - t0:.0f} s")
    return out


__all__ = ["quantize_and_evaluate"]
