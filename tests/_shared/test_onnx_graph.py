"""The shared ONNX graph helpers on a small hand-made graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from instab import models
from instab._shared import onnx_graph as G


def _model(opset: int = 13) -> onnx.ModelProto:
    """x [N, 4] -> Mul(w) -> Add(c, a Constant node) -> Relu -> y; a dead Neg branch; w also listed as an input."""
    w = numpy_helper.from_array(np.full(4, 2.0, np.float32), "w")
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones(4, np.float32))),
        helper.make_node("Mul", ["x", "w"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "c"], ["a"], name="add"),
        helper.make_node("Neg", ["m"], ["dead"], name="neg"),
        helper.make_node("Relu", ["a"], ["y"], name="relu"),
        helper.make_node("Softmax", ["y"], ["p"], name="softmax", axis=1),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
              helper.make_tensor_value_info("w", TensorProto.FLOAT, [4])]  # old IR: initializers listed as inputs
    outputs = [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 4])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_lookups():
    m = _model()
    g = m.graph
    assert G.producers(g.node)["a"].name == "add"
    consts = G.constants(g)
    assert set(consts) == {"w", "c"} and consts["c"].tolist() == [1.0] * 4
    assert G.constant_names(g) == {"w", "c"}
    assert G.initializer_names(g) == {"w"} and G.initializers(g)["w"] is g.initializer[0]
    assert [v.name for v in G.graph_inputs(g)] == ["x"]
    assert G.image_input(g).name == "x"
    assert G.attr(g.node[5], "axis") == 1 and G.attr(g.node[5], "missing", 7) == 7
    assert G.dims(g.input[0]) == ["N", 4] and G.static_dims(g.input[0]) == [None, 4]


def test_image_input_needs_exactly_one():
    m = _model()
    m.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1]))
    with pytest.raises(ValueError, match="expected one image input"):
        G.image_input(m.graph)


def test_shapes_after_inference():
    known = G.shapes(onnx.shape_inference.infer_shapes(_model()))
    assert known["x"] == [None, 4] and known["w"] == [4] and known["y"] == [None, 4]


def test_prune_keeps_what_targets_need_in_order():
    g = _model().graph
    assert [n.name for n in G.prune(g.node, {"y"})] == ["", "mul", "add", "relu"]
    assert [n.name for n in G.prune(list(g.node), ["dead"])] == ["mul", "neg"]
    assert G.prune(g.node, set()) == []


def test_opset_as_proto_and_ensure_opset(tmp_path):
    old = _model(opset=11)
    assert G.opset_version(old) == 11
    bare = onnx.ModelProto()
    assert G.opset_version(bare) == 0 and G.opset_version(bare, default=13) == 13
    copy = G.as_proto(old)
    assert copy == old and copy is not old
    path = tmp_path / "m.onnx"
    onnx.save(old, str(path))
    assert G.as_proto(path) == old and G.as_proto(str(path)) == old
    assert G.as_proto(models.Model(old, models.ModelSpec(), "m")) == old
    with pytest.raises(TypeError, match="model"):
        G.as_proto(3)
    new = G.ensure_opset(copy)
    assert G.opset_version(new) == 13
    assert G.ensure_opset(new) is new
