"""Small ONNX graph helpers shared by :mod:`instab.models` and :mod:`instab.train`.

Lookups (producers, constants, initializers, graph inputs, attributes, shapes),
dead-node pruning and model preparation (a private copy, a minimum opset).
``onnx`` is imported at the top: only modules that already use onnx import this one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter

_DEFAULT_DOMAINS = ("", "ai.onnx")


def producers(nodes: Iterable[onnx.NodeProto]) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the node that outputs it (pass ``graph.node`` or any node list)."""
    return {out: node for node in nodes for out in node.output}


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Values of the graph's constant tensors: initializers and ``Constant`` nodes with a ``value``."""
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
    return consts


def constant_names(graph: onnx.GraphProto) -> set[str]:
    """Names of every initializer and every ``Constant`` node output (whatever its attribute)."""
    return initializer_names(graph) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def initializer_names(graph: onnx.GraphProto) -> set[str]:
    """Names of the graph's initializers."""
    return {init.name for init in graph.initializer}


def initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializer name -> the initializer itself (edit it in place to change the graph)."""
    return {init.name: init for init in graph.initializer}


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The graph's real inputs: those that are not also initializers (old IR versions list both)."""
    inits = initializer_names(graph)
    return [i for i in graph.input if i.name not in inits]


def image_input(graph: onnx.GraphProto) -> onnx.ValueInfoProto:
    """The one real input of an image classifier; ValueError when there are several or none."""
    inputs = graph_inputs(graph)
    if len(inputs) != 1:
        raise ValueError(f"model: expected one image input, found {[i.name for i in inputs]}")
    return inputs[0]


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of attribute ``name`` of ``node`` (ints, floats, bytes, lists, tensors), or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """A value's dimensions: ints where fixed, the symbolic name where named, ``"?"`` where unknown."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def static_dims(value: onnx.ValueInfoProto) -> list[int | None]:
    """A value's dimensions: ints where fixed, None where symbolic or unknown."""
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Static shapes of the inputs, value_info, outputs and initializers known to ``model``.

    Run ``onnx.shape_inference.infer_shapes`` first to know the intermediate tensors.
    """
    out: dict[str, list[int | None]] = {}
    g = model.graph
    for v in list(g.input) + list(g.value_info) + list(g.output):
        if v.type.tensor_type.HasField("shape"):
            out[v.name] = static_dims(v)
    for i in g.initializer:
        out[i.name] = list(i.dims)
    return out


def prune(nodes: Iterable[onnx.NodeProto], targets: Iterable[str]) -> list[onnx.NodeProto]:
    """The nodes (in their order; ``nodes`` topologically sorted) that ``targets`` depend on."""
    need = set(targets)
    keep = []
    for n in reversed(list(nodes)):
        if any(o in need for o in n.output):
            keep.append(n)
            need.update(i for i in n.input if i)
    return keep[::-1]


def opset_version(model: onnx.ModelProto, default: int = 0) -> int:
    """The model's default-domain (``ai.onnx``) opset version, or ``default`` when it imports none."""
    return max((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), default=default)


def as_proto(model: Any) -> onnx.ModelProto:
    """A private copy of ``model``: an ``onnx.ModelProto``, an :class:`instab.models.Model` or a path."""
    if isinstance(model, onnx.ModelProto):
        return copy.deepcopy(model)
    if hasattr(model, "proto") and isinstance(model.proto, onnx.ModelProto):  # instab.models.Model
        return copy.deepcopy(model.proto)
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        return onnx.load(str(model))
    raise TypeError(f"model: expected an onnx.ModelProto, an instab Model or a path, got {type(model).__name__}")


def ensure_opset(model: onnx.ModelProto, version: int = 13) -> onnx.ModelProto:
    """``model`` converted to opset ``version`` when it is older (returned as is otherwise)."""
    if opset_version(model) < version:
        model = version_converter.convert_version(model, version)
    return model


__all__ = [
    "as_proto",
    "attr",
    "constant_names",
    "constants",
    "dims",
    "ensure_opset",
    "graph_inputs",
    "image_input",
    "initializer_names",
    "initializers",
    "opset_version",
    "producers",
    "prune",
    "shapes",
    "static_dims",
]
