"""Which parameters a model has, layer by layer, and which of them to train."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

_LAYER_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
_BIAS_OPS = ("Add", "Mul", "Sub")


def parameter_layers(model: onnx.ModelProto) -> list[list[str]]:
    """Trainable parameters grouped by layer, in graph order.

    A layer is a Conv/ConvTranspose/MatMul/Gemm node's float initializer
    operands, plus a bias or scale added right after it (an Add/Mul/Sub with an
    initializer of more than one element).
    """
    graph = model.graph
    floats = {
        i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT and int(np.prod(i.dims)) > 0
    }
    sizes = {i.name: int(np.prod(i.dims)) for i in graph.initializer}
    layers: list[list[str]] = []
    layer_of: dict[str, int] = {}
    seen: set[str] = set()
    for n in graph.node:
        if n.op_type in _LAYER_OPS:
            ps = [i for i in n.input if i in floats and i not in seen]
            if ps:
                layers.append(ps)
                seen.update(ps)
                layer_of[n.output[0]] = len(layers) - 1
        elif n.op_type in _BIAS_OPS and len(n.input) == 2:
            a, c = n.input
            if a in layer_of:
                prev, p = a, c
            elif c in layer_of:
                prev, p = c, a
            else:
                continue
            if p in floats and sizes[p] > 1 and p not in seen:
                layers[layer_of[prev]].append(p)
                seen.add(p)
                layer_of[n.output[0]] = layer_of[prev]
    return layers


def select_trainable(layers: list[list[str]], trainable: str | int, embedding: list[str]) -> list[str]:
    """Parameter names for ``trainable``: "all", "last:N" (or an int N) or "embedding"."""
    if isinstance(trainable, (int, np.integer)) and not isinstance(trainable, bool):
        trainable = f"last:{int(trainable)}"
    if not isinstance(trainable, str):
        raise TypeError(f"trainable: expected 'all', 'last:N', 'embedding' or an int, got {trainable!r}")
    if trainable == "all":
        chosen = layers
    elif trainable.startswith("last:"):
        try:
            k = int(trainable[5:])
        except ValueError:
            raise ValueError(f"trainable: {trainable!r} is not 'last:N' with an integer N") from None
        if k < 1:
            raise ValueError(f"trainable: N must be >= 1, got {k}")
        chosen = layers[-k:]
    elif trainable == "embedding":
        if not embedding:
            raise ValueError("trainable='embedding' needs the added embedding layer")
        chosen = [ly for ly in layers if set(ly) & set(embedding)] + layers[-1:]
    else:
        raise ValueError(f"trainable: expected 'all', 'last:N' or 'embedding', got {trainable!r}")
    out: list[str] = []
    for ly in chosen:
        out.extend(p for p in ly if p not in out)
    return out


__all__ = [
    "parameter_layers",
    "select_trainable",
]
