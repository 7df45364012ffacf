"""Half-precision copies of float ONNX classifiers (``onnxconverter-common`` is not a dependency).

:func:`to_fp16` stores every float32 weight as float16 and runs the graph in
float16: a float input is cast to float16 on entry, float outputs are cast back
to float32, and the scale of each QuantizeLinear/DequantizeLinear stays float32
(ONNX requires it) with casts around it. ONNX Runtime's CPU provider has float16
kernels for the operators of the shared MobileNets (Conv, Clip, Add, Softmax, ...).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from instab.models.loading import Model

_QDQ = ("QuantizeLinear", "DequantizeLinear")


def _half(tensor: onnx.TensorProto) -> onnx.TensorProto:
    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name)


def _rename_everywhere(nodes: list[onnx.NodeProto], old: str, new: str) -> None:
    for n in nodes:
        for seq in (n.input, n.output):
            for i, x in enumerate(seq):
                if x == old:
                    seq[i] = new


def _convert_constants(graph: onnx.GraphProto) -> None:
    """float32 initializers (but Q/DQ scales), Cast-to-float and Constant nodes become float16."""
    keep = {x for n in graph.node if n.op_type in _QDQ for x in n.input[1:]}
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in keep:
            graph.initializer[i].CopyFrom(_half(init))
    for n in graph.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.FLOAT16
            elif n.op_type == "Constant" and a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(_half(a.t))


def to_fp16(model: Model) -> Model:
    """Float16 copy of an ONNX classifier (same inputs, outputs and spec; name suffixed ``-fp16``)."""
    if not isinstance(model, Model):
        raise TypeError(f"model: expected an instab.models.Model (ONNX), got {type(model).__name__}")
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    g = proto.graph
    _convert_constants(g)
    nodes = list(g.node)
    before, after = [], []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            _rename_everywhere(nodes, inp.name, inp.name + "_fp16")
            before.append(helper.make_node("Cast", [inp.name], [inp.name + "_fp16"], to=TensorProto.FLOAT16))
    for out in g.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT:
            _rename_everywhere(nodes, out.name, out.name + "_fp16")
            after.append(helper.make_node("Cast", [out.name + "_fp16"], [out.name], to=TensorProto.FLOAT))
    middle: list[onnx.NodeProto] = []
    for n in nodes:  # Q/DQ keep float32 on their float side
        if n.op_type == "DequantizeLinear":
            half = n.output[0]
            n.output[0] = half + "_fp32"
            middle += [n, helper.make_node("Cast", [n.output[0]], [half], to=TensorProto.FLOAT16)]
        elif n.op_type == "QuantizeLinear":
            cast = helper.make_node("Cast", [n.input[0]], [n.input[0] + "_to_fp32"], to=TensorProto.FLOAT)
            n.input[0] = n.input[0] + "_to_fp32"
            middle += [cast, n]
        else:
            middle.append(n)
    del g.node[:]
    g.node.extend(before + middle + after)
    del g.value_info[:]  # float32 intermediate types no longer hold: ONNX Runtime infers them again
    return Model(proto, model.spec, model.name + "-fp16")


__all__ = ["to_fp16"]
