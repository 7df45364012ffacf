"""ONNX graph rewrites and inspection used by :mod:`instab.models`.

- ``make_batch_dynamic``: a graph exported with batch 1 gets a symbolic batch.
- ``fold_qdq``: a QDQ int8 graph becomes a plain float32 graph.
- ``add_embedding_output``: expose the input of the final classifier layer.
- ``inspect_graph``: what the graph itself tells about its input and output.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from instab._shared.onnx_graph import (
    attr,
    constants,
    dims,
    graph_inputs,
    initializer_names,
    initializers,
    opset_version,
    producers,
)

BATCH_DIM = "N"
# Ops that move or reshape data without changing values; quantized tensors pass through them.
_PASSTHROUGH = {
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "MaxPool",
    "Slice", "Gather", "Concat", "Split", "Pad", "Expand", "Tile", "DepthToSpace", "SpaceToDepth",
}
# Ops walked through from the output back to the classifier layer.
_HEAD_PASSTHROUGH = {"QuantizeLinear", "DequantizeLinear", "Reshape", "Squeeze", "Flatten", "Identity",
                     "Transpose", "Cast"}


# ---------------------------------------------------------------- dynamic batch


def make_batch_dynamic(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    """Return (copy with a symbolic batch axis, whether anything changed).

    Inputs and outputs with batch 1 get the symbolic dimension ``N``; constant
    Reshape targets that hard-code batch 1 get -1 (or 0, "copy the input's
    dimension", when the target already has a -1); stale intermediate shapes
    (value_info) are dropped.
    """
    ios = graph_inputs(model.graph) + list(model.graph.output)
    if not any(dims(v) and dims(v)[0] == 1 for v in ios):
        return model, False
    model = copy.deepcopy(model)
    graph = model.graph
    for v in graph_inputs(graph) + list(graph.output):
        shape = v.type.tensor_type.shape.dim
        if len(shape) and shape[0].HasField("dim_value") and shape[0].dim_value == 1:
            shape[0].Clear()
            shape[0].dim_param = BATCH_DIM
    inits = initializers(graph)
    constant_nodes = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    done: set[str] = set()
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] in done:
            continue
        name = node.input[1]
        if name in inits:
            shape = numpy_helper.to_array(inits[name]).copy()
        elif name in constant_nodes:
            shape = numpy_helper.to_array(constant_nodes[name].attribute[0].t).copy()
        else:
            continue
        if shape.ndim != 1 or shape.size == 0 or shape[0] != 1:
            continue
        shape[0] = 0 if (shape == -1).any() else -1
        tensor = numpy_helper.from_array(shape.astype(np.int64), name)
        if name in inits:
            inits[name].CopyFrom(tensor)
        else:
            constant_nodes[name].attribute[0].t.CopyFrom(tensor)
        done.add(name)
    del graph.value_info[:]
    return model, True


# ---------------------------------------------------------------- QDQ folding


def _dequantize_array(q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int) -> np.ndarray:
    q = q.astype(np.float64)
    scale = scale.astype(np.float64)
    zp = np.zeros_like(scale) if zp is None else zp.astype(np.float64)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis % q.ndim] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q - zp) * scale).astype(np.float32)


def _quantize_array(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int) -> np.ndarray:
    dtype = np.uint8 if zp is None else zp.dtype
    zpf = np.zeros_like(scale, dtype=np.float64) if zp is None else zp.astype(np.float64)
    scale = scale.astype(np.float64)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = scale.size
        scale, zpf = scale.reshape(shape), zpf.reshape(shape)
    info = np.iinfo(dtype)
    q = np.rint(x.astype(np.float64) / scale) + zpf  # rint: round half to even, as ONNX specifies
    return np.clip(q, info.min, info.max).astype(dtype)


def _saturation_clip(
    node: onnx.NodeProto, data: str, consts: dict[str, np.ndarray], made_by: dict, opset: int
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]] | None:
    """A Clip equal to the saturation of an activation QuantizeLinear, or None when not needed.

    TFLite conversions fold ReLU6 into the quantized range, so dropping the Q
    would drop the activation: the float graph keeps the clamp.
    """
    scale = consts.get(node.input[1])
    zp_name = node.input[2] if len(node.input) > 2 else ""
    zp = consts.get(zp_name) if zp_name else np.zeros((), np.uint8)
    if scale is None or zp is None or scale.size != 1:
        return None
    src = made_by.get(data)
    if src is not None and src.op_type == "Softmax":
        return None  # probabilities: keep them exact rather than capped at 255/256
    info = np.iinfo(zp.dtype)
    s, z = float(np.ravel(scale)[0]), float(np.ravel(zp)[0])
    lo, hi = (info.min - z) * s, (info.max - z) * s
    out = f"{node.output[0]}_saturate"
    if opset < 11:
        return helper.make_node("Clip", [data], [out], name=out, min=lo, max=hi), []
    lo_t = numpy_helper.from_array(np.array(lo, np.float32), out + "_min")
    hi_t = numpy_helper.from_array(np.array(hi, np.float32), out + "_max")
    return helper.make_node("Clip", [data, lo_t.name, hi_t.name], [out], name=out), [lo_t, hi_t]


def fold_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold QuantizeLinear/DequantizeLinear into a plain float32 graph.

    Constant Q/DQ (weights, biases) are evaluated into float initializers;
    Q/DQ on activations (fake quantization) are removed, the saturation of a
    removed Q kept as a Clip to its range (TFLite folds ReLU6 into it). A DequantizeLinear of
    integer data from outside the graph (a uint8 image input, possibly after a
    Transpose) is kept: it is the input scaling, not fake quantization.
    Integer graph outputs produced by quantization become float outputs.
    """
    model = copy.deepcopy(model)
    graph = model.graph
    consts = constants(graph)
    alias: dict[str, str] = {}
    from_q: set[str] = set()  # (original) names of tensors holding quantized copies of float activations
    new_consts: dict[str, np.ndarray] = {}
    kept: list[onnx.NodeProto] = []
    made_by = producers(graph.node)
    opset = opset_version(model, default=13)

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    for node in graph.node:
        orig = list(node.input)
        for i, name in enumerate(orig):
            node.input[i] = resolve(name)
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            ins = list(node.input) + [""] * (3 - len(node.input))
            data, scale, zp = ins[0], ins[1], ins[2]
            if data in consts and scale in consts and (not zp or zp in consts):
                fn = _dequantize_array if node.op_type == "DequantizeLinear" else _quantize_array
                value = fn(consts[data], consts[scale], consts[zp] if zp else None, int(attr(node, "axis", 1)))
                consts[node.output[0]] = value
                new_consts[node.output[0]] = value
                continue
            if node.op_type == "QuantizeLinear":
                from_q.add(node.output[0])
                clip = _saturation_clip(node, data, consts, made_by, opset)
                if clip is not None:
                    kept.append(clip[0])
                    for init in clip[1]:
                        new_consts[init.name] = numpy_helper.to_array(init)
                    alias[node.output[0]] = clip[0].output[0]
                else:
                    alias[node.output[0]] = data
                continue
            if orig[0] in from_q:
                alias[node.output[0]] = data
                continue
            kept.append(node)  # DQ of external integer data: the input scaling
            continue
        if node.op_type in _PASSTHROUGH and orig and orig[0] in from_q:
            from_q.update(node.output)
        kept.append(node)

    used = {name for node in kept for name in node.input}
    output_fix: list[onnx.NodeProto] = []
    for out in graph.output:
        src = resolve(out.name)
        if src != out.name:
            output_fix.append(helper.make_node("Identity", [src], [out.name], name=f"{out.name}_folded"))
            used.add(src)
        if out.type.tensor_type.elem_type in (TensorProto.UINT8, TensorProto.INT8):
            out.type.tensor_type.elem_type = TensorProto.FLOAT
    old_inits = initializer_names(graph)
    keep_inits = [i for i in graph.initializer if i.name in used]
    keep_inits += [
        numpy_helper.from_array(new_consts[n], n) for n in sorted(used) if n in new_consts and n not in old_inits
    ]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    del graph.node[:]
    graph.node.extend(kept + output_fix)
    del graph.value_info[:]
    # Drop initializers that old IR versions also list as graph inputs once they are unused.
    keep_inputs = [i for i in graph.input if i.name not in old_inits or i.name in used]
    del graph.input[:]
    graph.input.extend(keep_inputs)
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------- inspection


@dataclass(frozen=True)
class GraphInfo:
    """What an image classifier's graph says about itself."""

    input_name: str
    input_dtype: str  # "uint8" | "float32"
    input_shape: tuple  # dims, ints or symbolic strings
    layout: str  # "nhwc" | "nchw"
    size: int
    output_name: str
    num_outputs: int  # classes in the output (1001 with background)
    output_kind: str  # "probabilities" | "logits"
    output_quant: tuple[float, int] | None  # (scale, zero point) of an integer output
    input_quant: tuple[float, int] | None  # (scale, zero point) of a Q applied to a float input


_DTYPES: dict[int, str] = {TensorProto.UINT8: "uint8", TensorProto.FLOAT: "float32", TensorProto.INT8: "int8"}


def _input_layout(inp: onnx.ValueInfoProto) -> tuple[list[int | str], str, int]:
    """Dimensions, layout (``nhwc`` or ``nchw``) and square size (0 when not fixed) of the image input."""
    in_dims = dims(inp)
    if len(in_dims) != 4:
        raise ValueError(f"model: input {inp.name!r} has shape {in_dims}; expected 4-D NHWC or NCHW")
    if in_dims[3] == 3 and in_dims[1] != 3:
        layout, hw = "nhwc", in_dims[1:3]
    elif in_dims[1] == 3:
        layout, hw = "nchw", in_dims[2:4]
    else:
        raise ValueError(f"model: cannot tell the layout of input shape {in_dims}; pass spec with layout=")
    size = hw[0] if isinstance(hw[0], int) and hw[0] > 0 and hw[0] == hw[1] else 0
    return in_dims, layout, int(size)


def _output_kind(made_by: dict[str, onnx.NodeProto], name: str) -> str:
    """``probabilities`` when a Softmax feeds output ``name`` through pass-through ops, else ``logits``."""
    while name in made_by:
        node = made_by[name]
        if node.op_type == "Softmax":
            return "probabilities"
        if node.op_type not in _HEAD_PASSTHROUGH:
            break
        name = node.input[0]
    return "logits"


def _quant_params(q: onnx.NodeProto, consts: dict[str, np.ndarray]) -> tuple[float, int]:
    """(scale, zero point) of a QuantizeLinear node whose scale is constant."""
    zp = consts[q.input[2]] if len(q.input) > 2 and q.input[2] else np.zeros(1)
    return float(np.ravel(consts[q.input[1]])[0]), int(np.ravel(zp)[0])


def _output_quant(
    out: onnx.ValueInfoProto, made_by: dict[str, onnx.NodeProto], consts: dict[str, np.ndarray]
) -> tuple[float, int] | None:
    """(scale, zero point) of an integer output, read from the QuantizeLinear that makes it; None for float."""
    if out.type.tensor_type.elem_type not in (TensorProto.UINT8, TensorProto.INT8):
        return None
    src = made_by.get(out.name)
    while src is not None and src.op_type in ("Reshape", "Squeeze", "Flatten", "Identity"):
        src = made_by.get(src.input[0])
    if src is None or src.op_type != "QuantizeLinear" or src.input[1] not in consts:
        raise ValueError(f"model: integer output {out.name!r} without a QuantizeLinear to read its scale from")
    return _quant_params(src, consts)


def _input_quant(graph: onnx.GraphProto, name: str, consts: dict[str, np.ndarray]) -> tuple[float, int] | None:
    """(scale, zero point) of a QuantizeLinear applied to float input ``name`` (maybe after a Transpose), or None."""
    for node in graph.node:
        if name in node.input:
            q = node
            if q.op_type == "Transpose":
                q = next((n for n in graph.node if q.output[0] in n.input), q)
            if q.op_type == "QuantizeLinear" and q.input[1] in consts:
                return _quant_params(q, consts)
            return None  # only the first consumer of the input counts
    return None


def inspect_graph(model: onnx.ModelProto) -> GraphInfo:
    """Read layout, dtype, size, classes and output kind from the graph."""
    graph = model.graph
    inputs = graph_inputs(graph)
    if len(inputs) != 1:
        raise ValueError(f"model: expected one image input, found {len(inputs)}: {[i.name for i in inputs]}")
    if not graph.output:
        raise ValueError("model: the graph has no outputs")
    inp, out = inputs[0], graph.output[0]
    in_type = inp.type.tensor_type.elem_type
    if in_type not in (TensorProto.UINT8, TensorProto.FLOAT):
        raise ValueError(f"model: input {inp.name!r} has element type {in_type}; expected uint8 or float32")
    in_dims, layout, size = _input_layout(inp)
    out_dims = dims(out)
    if len(out_dims) != 2 or not isinstance(out_dims[1], int):
        raise ValueError(f"model: output {out.name!r} has shape {out_dims}; expected [batch, classes]")

    made_by = producers(graph.node)
    consts = constants(graph)
    return GraphInfo(
        input_name=inp.name,
        input_dtype=_DTYPES[in_type],
        input_shape=tuple(in_dims),
        layout=layout,
        size=size,
        output_name=out.name,
        num_outputs=int(out_dims[1]),
        output_kind=_output_kind(made_by, out.name),
        output_quant=_output_quant(out, made_by, consts),
        input_quant=_input_quant(graph, inp.name, consts) if in_type == TensorProto.FLOAT else None,
    )


# ---------------------------------------------------------------- embedding


def find_embedding(model: onnx.ModelProto) -> str:
    """Name of the tensor feeding the final classifier layer (Gemm, MatMul or 1x1 Conv)."""
    graph = model.graph
    made_by = producers(graph.node)
    consts = constants(graph)
    name = graph.output[0].name
    while name in made_by:
        node = made_by[name]
        if node.op_type in ("Gemm", "MatMul", "Conv"):
            return node.input[0]
        if node.op_type == "Add":
            name = next((i for i in node.input if i not in consts), node.input[0])
            continue
        if node.op_type in _HEAD_PASSTHROUGH or node.op_type == "Softmax":
            name = node.input[0]
            continue
        break
    raise ValueError("model: could not find the final classifier layer (Gemm/MatMul/Conv) before the output")


def add_embedding_output(model: onnx.ModelProto, name: str = "embedding") -> onnx.ModelProto:
    """Copy of ``model`` with an extra output ``name``: the classifier's input, flattened to [N, D]."""
    if any(o.name == name for o in model.graph.output):
        return model
    source = find_embedding(model)
    model = copy.deepcopy(model)
    graph = model.graph
    if source != name:
        if any(name in n.output for n in graph.node) or any(i.name == name for i in graph.input):
            raise ValueError(f"name: the graph already has a tensor {name!r}; choose another embedding name")
        graph.node.append(helper.make_node("Flatten", [source], [name], name=f"{name}_flatten", axis=1))
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH_DIM, None]))
    return model

__all__ = [
    "BATCH_DIM",
    "GraphInfo",
    "add_embedding_output",
    "find_embedding",
    "fold_qdq",
    "inspect_graph",
    "make_batch_dynamic",
]
