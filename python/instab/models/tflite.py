"""TFLite classifiers (``.tflite`` files), run by LiteRT (``ai-edge-litert``, the runtime Android ships).

:func:`load_tflite` reads the file and its spec (layout, input dtype and size,
output quantization, background column) from the interpreter's tensor details.
The model stays a flat buffer: :class:`instab.inference.Classifier` runs it
through :mod:`instab.inference.litert`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from instab.models.loading import ModelSpec

INSTALL_HINT = "install instab[litert] (pip install 'instab[litert]', which brings ai-edge-litert)"
TFLITE_SUFFIX = ".tflite"


def litert_interpreter_module() -> Any:
    """The ``ai_edge_litert.interpreter`` module, or ImportError with one line saying how to install it."""
    try:
        # function-local: ai-edge-litert is an optional dependency (the [litert] extra)
        from ai_edge_litert import interpreter
    except ImportError:
        raise ImportError(f"model: a .tflite model needs LiteRT: {INSTALL_HINT}") from None
    return interpreter


class TFLiteModel:
    """A TFLite image classifier: the flat buffer, its :class:`~instab.models.ModelSpec` and a name."""

    def __init__(self, content: bytes, spec: ModelSpec, name: str = "model") -> None:
        if not isinstance(content, bytes):
            raise TypeError(f"content: expected the .tflite file's bytes, got {type(content).__name__}")
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"spec: expected a ModelSpec, got {type(spec).__name__}")
        self.content = content
        self.spec = spec
        self.name = name

    def serialized(self) -> bytes:
        """The flat buffer (what LiteRT interpreters are built from; also the model's identity)."""
        return self.content

    def __repr__(self) -> str:
        s = self.spec
        return (f"TFLiteModel({self.name!r}, {s.dtype} {s.layout} {s.size}x{s.size}, "
                f"{s.num_classes + s.class_offset} outputs ({s.output_kind}))")


def _quant(details: dict[str, Any]) -> tuple[float, int] | None:
    scale, zero = details.get("quantization", (0.0, 0))
    return (float(scale), int(zero)) if scale else None


def tflite_spec(content: bytes) -> ModelSpec:
    """Spec read from a TFLite model's input and output tensor details.

    A uint8 input takes raw RGB pixels (the model's input quantization is its
    scaling); a float32 input is given ``x / 127.5 - 1`` (the TensorFlow MobileNet
    convention): pass a spec to :func:`instab.models.load` to override. The output is
    taken as probabilities when it is quantized or named like a softmax, else logits.
    """
    interpreter = litert_interpreter_module()
    it = interpreter.Interpreter(model_content=content, experimental_op_resolver_type=(
        interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    shape, dtype = [int(d) for d in inp["shape"]], inp["dtype"].__name__
    if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
        raise ValueError(f"model: expected a [N, S, S, 3] image input, got shape {shape}")
    if dtype not in ("uint8", "float32"):
        raise ValueError(f"model: expected a uint8 or float32 input, got {dtype} (int8 inputs are not supported)")
    width = int(out["shape"][-1])
    out_quant = _quant(out)
    softmax = out_quant is not None or any(w in out["name"].lower() for w in ("softmax", "prob"))
    scaling: dict[str, Any] = {} if dtype == "uint8" else {"scale": (1 / 127.5,) * 3, "offset": (-1.0,) * 3}
    return ModelSpec(layout="nhwc", dtype=dtype, size=shape[1], class_offset=1 if width == 1001 else 0,
                     num_classes=1000 if width in (1000, 1001) else width,
                     output_kind="probabilities" if softmax else "logits", input_name=inp["name"],
                     output_name=out["name"], output_quant=out_quant, **scaling)


def load_tflite(path: str | os.PathLike) -> TFLiteModel:
    """Read a ``.tflite`` file and its spec; ImportError ("install instab[litert]") without ai-edge-litert."""
    path = Path(path)
    litert_interpreter_module()  # the one-line install hint before anything else
    content = path.read_bytes()
    try:
        spec = tflite_spec(content)
    except (ValueError, RuntimeError) as exc:
        if "model:" in str(exc):
            raise
        raise ValueError(f"model: {path} is not a readable TFLite model ({type(exc).__name__}: {exc})") from None
    return TFLiteModel(content, spec, path.stem)


__all__ = ["INSTALL_HINT", "TFLITE_SUFFIX", "TFLiteModel", "litert_interpreter_module", "load_tflite", "tflite_spec"]
