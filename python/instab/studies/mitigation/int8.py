"""int8 re-quantization (static QDQ, calibrated on the training views) of the baseline and the fine-tuned models."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from instab import models
from instab.studies.mitigation.context import StudyContext
from instab.train.quantize import quantize_int8

_ORT_QUANTIZATION = str(Path("onnxruntime", "quantization", ""))


class _OnnxRuntimeQuantizationFilter(logging.Filter):
    """Drops the advice ONNX Runtime's quantizer logs below ERROR (e.g. "consider pre-processing")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or _ORT_QUANTIZATION not in record.pathname


@contextmanager
def quiet_onnxruntime_quantization() -> Iterator[None]:
    """Silence ONNX Runtime's quantization warnings inside the block, and nothing else.

    ``onnxruntime.quantization`` logs with the module-level ``logging.warning``, i.e.
    through the root logger, so no ``onnxruntime`` logger can silence it: a filter
    that matches only records made in that package's files sits on the root logger
    for the block. Levels and handlers stay as they are.
    """
    root, quiet = logging.getLogger(), _OnnxRuntimeQuantizationFilter()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _quantize_row(ctx: StudyContext, i: int, calibration: np.ndarray, out: str | Path | None,
                  saved: dict[str, str]) -> None:
    """Re-quantize row ``i``'s model, add its int8 measures to the row; save both models under ``out``."""
    t0 = time.perf_counter()
    start, row = ctx.tuner.start, ctx.table.rows[i]
    full = models.Model(ctx.tuner.full_model(ctx.table.models[i]), start.spec, f"{start.name}-row{i}")
    with quiet_onnxruntime_quantization():
        q = quantize_int8(full, calibration)
    m = ctx.tuner.measure_model(q, ctx.views, ctx.evals.labels)
    row["int8_accuracy"], row["int8_instability"] = m["accuracy"], m["instability"]
    row["int8_accuracy_per_device"] = m["accuracy_per_device"]
    ctx.log(f"  int8 of row {i} ({row['method']} {row['loss'] or ''} {row['noise'] or ''}): "
            f"accuracy {m['accuracy']:.4f}, instability {m['instability']:.4f} ({time.perf_counter() - t0:.0f} s)")
    if out is not None and i != 0:
        mdir = Path(out) / "models"
        mdir.mkdir(parents=True, exist_ok=True)
        tag = f"{row['loss']}-{row['noise']}"
        full.save(mdir / f"{tag}.onnx")
        q.save(mdir / f"{tag}-int8.onnx")
        saved[tag] = str(mdir / f"{tag}.onnx")


def add_int8_results(ctx: StudyContext, best_rows: dict[str, int], model: Any,
                     out: str | Path | None) -> dict[str, str]:
    """int8 measures of the baseline and each loss's most stable row (``config.int8="best"``) or of every
    trained row (``"all"``), plus a row for ``model`` itself when it is a shipped int8 (QDQ) model.

    Returns the saved float models (``out/models/LOSS-NOISE.onnx``, beside ``-int8.onnx``) by tag.
    """
    config = ctx.config
    saved: dict[str, str] = {}
    if config.int8 == "none":
        return saved
    targets = [0] + sorted(set(best_rows.values())) if config.int8 == "best" else sorted(ctx.table.models)
    order = np.random.default_rng([int(ctx.seed) & 0xFFFFFFFF, 0xCA1]).permutation(ctx.train.n)
    calibration = ctx.train.x_images[order[: config.calibration]]
    for i in targets:
        _quantize_row(ctx, i, calibration, out, saved)
    # The shared int8 model as shipped, for reference.
    if isinstance(model, (str, Path)):
        orig = models.load(model)
        if orig.proto is not None and any(nd.op_type == "QuantizeLinear" for nd in orig.proto.graph.node):
            ctx.table.add("original int8 model", None, None, None,
                          ctx.tuner.measure_model(orig, ctx.views, ctx.evals.labels))
    return saved


__all__ = ["add_int8_results", "quiet_onnxruntime_quantization"]
