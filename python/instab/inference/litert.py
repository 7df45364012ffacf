"""LiteRT (``ai-edge-litert``) sessions: a TFLite model behind ONNX Runtime's ``run`` interface.

:class:`LiteRTSession` is what :class:`instab.inference.Classifier` builds for a
:class:`instab.models.TFLiteModel`, so ``predict`` returns the same
:class:`~instab.inference.Prediction` as for ONNX models. ``kernels="xnnpack"``
is LiteRT's default CPU path (the XNNPACK delegate, as on Android);
``"reference"`` uses its reference kernels (``OpResolverType.BUILTIN_REF``).
A model with a fixed batch of 1 is run one image at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from instab._shared.validation import check_threads
from instab.models.tflite import TFLiteModel, litert_interpreter_module

#: LiteRT kernel sets: name -> OpResolverType member.
KERNELS = {"xnnpack": "BUILTIN", "reference": "BUILTIN_REF"}


@dataclass(frozen=True)
class TensorInfo:
    """Name and shape of a session input or output (as ONNX Runtime's ``NodeArg``)."""

    name: str
    shape: list[int]


class LiteRTSession:
    """A LiteRT interpreter for one TFLite model.

    Parameters
    ----------
    model : TFLiteModel
        The model.
    threads : int, optional
        Interpreter threads (None: all cores).
    kernels : {"xnnpack", "reference"}, default "xnnpack"
        The XNNPACK delegate or LiteRT's reference kernels.
    """

    def __init__(self, model: TFLiteModel, threads: int | None = None, kernels: str = "xnnpack") -> None:
        if not isinstance(model, TFLiteModel):
            raise TypeError(f"model: expected a TFLiteModel, got {type(model).__name__}")
        if kernels not in KERNELS:
            raise ValueError(f"kernels: expected one of {sorted(KERNELS)}, got {kernels!r}")
        threads = check_threads(threads)
        interpreter = litert_interpreter_module()
        resolver = getattr(interpreter.OpResolverType, KERNELS[kernels])
        self.kernels = kernels
        self._it = interpreter.Interpreter(model_content=model.content, num_threads=threads or os.cpu_count() or 1,
                                           experimental_op_resolver_type=resolver)
        self._it.allocate_tensors()
        (self._in,), (self._out,) = self._it.get_input_details(), self._it.get_output_details()

    def get_inputs(self) -> list[TensorInfo]:
        """The input tensor (one)."""
        return [TensorInfo(self._in["name"], [int(d) for d in self._in["shape"]])]

    def get_outputs(self) -> list[TensorInfo]:
        """The output tensor (one)."""
        return [TensorInfo(self._out["name"], [int(d) for d in self._out["shape"]])]

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run a batch, one image per invocation: ``[output [n, ...]]`` in the model's output dtype."""
        if output_names not in (None, [self._out["name"]]):
            raise ValueError(f"output_names: this model has the one output {self._out['name']!r}, got {output_names}")
        (batch,) = feed.values()
        x = np.asarray(batch, dtype=self._in["dtype"])
        rows: list[Any] = []
        for image in x:
            self._it.set_tensor(self._in["index"], image[None])
            self._it.invoke()
            rows.append(self._it.get_tensor(self._out["index"])[0].copy())
        out = np.stack(rows) if rows else np.zeros((0, *self._out["shape"][1:]), self._out["dtype"])
        return [out]


__all__ = ["KERNELS", "LiteRTSession", "TensorInfo"]
