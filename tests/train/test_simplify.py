"""The forward-graph simplifications keep both the values and the gradients, at the kinks too."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from onnx import helper

from instab._shared.onnx_graph import constants, shapes
from instab.train import build_gradient_graph, build_training_graph
from instab.train.simplify import drop_redundant_clamps, fold_pads_into_convs, simplify
from tests._support.training import make_model, session, tiny_classifier

C = 4
# Values on and around every bound used below, so that masks at exact ties are exercised.
GRID = np.array([-1.0, 0.0, 0.5, 1.5, 2.0, 4.0, 5.0, 6.0, 7.0], np.float32)


def grid_input(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).choice(GRID, size=shape).astype(np.float32)


def simplified(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its nodes replaced by :func:`simplify`'s (the graph output is protected)."""
    out = copy.deepcopy(model)
    g = out.graph
    nodes, inits = simplify(list(g.node), constants(g), {g.output[0].name}, shapes(model))
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(inits)
    onnx.checker.check_model(out)
    return out


def assert_same_values_and_gradients(model, feeds, wrt, atol=0.0):
    new = simplified(model)
    out = model.graph.output[0].name
    y0 = session(model).run(None, feeds)[0]
    np.testing.assert_allclose(session(new).run(None, feeds)[0], y0, rtol=0, atol=atol)
    seed = np.random.default_rng(1).standard_normal(y0.shape).astype(np.float32)
    grads = []
    for m in (model, new):
        gm = build_gradient_graph(m, out, wrt)
        grads.append(session(gm).run([f"{t}::grad" for t in wrt], {**feeds, f"{out}::seed": seed}))
    for t, a, b in zip(wrt, *grads, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=max(atol, 1e-6), err_msg=t)
    return new


def ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def conv_tail(x: str) -> list[onnx.NodeProto]:
    return [helper.make_node("Conv", [x, "W"], ["Y"], kernel_shape=[3, 3], strides=[2, 2], group=C)]


def test_relu6_pad_clip_conv_becomes_one_clamp_and_a_padded_conv():
    """Dequantized MobileNetV2's ``Clip(0,6) -> Pad(0) -> Clip(0,6) -> Conv``: the second clamp and the Pad go."""
    w = np.random.default_rng(2).uniform(-1, 1, (C, 1, 3, 3)).astype(np.float32)
    feeds = {"X": grid_input((2, C, 6, 6)), "W": w}
    nodes = [
        helper.make_node("Clip", ["X", "zero", "six"], ["a"]),
        helper.make_node("Pad", ["a", "pads"], ["p"]),
        helper.make_node("Clip", ["p", "zero", "six"], ["s"]),
        *conv_tail("s"),
    ]
    consts = {"zero": np.float32(0), "six": np.float32(6), "pads": np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64)}
    new = assert_same_values_and_gradients(make_model(nodes, feeds, "Y", consts), feeds, ["X", "W"])
    assert ops(new) == ["Clip", "Conv"]
    conv = new.graph.node[1]
    assert conv.input[0] == "a" and list(helper.get_attribute_value(conv.attribute[-1])) == [0, 0, 1, 1]


def per_channel(values) -> np.ndarray:
    return np.asarray(values, np.float32).reshape(1, C, 1, 1)


@pytest.mark.parametrize(
    "cap,hi2,dropped",
    [
        ([0.0, 2.0, 4.0, 6.0], 6.0, True),  # the Min's largest cap is the clamp's bound: the last Clip is a no-op
        ([1.5, 2.0, 4.0, 5.0], 5.0, False),  # a value equal to the cap may carry a gradient: Clip(0, 5) must stay
        ([6.0, 7.0, 6.0, 9.0], 6.0, True),  # the Min itself never acts (caps >= 6): it goes too
    ],
)
def test_clamp_min_clamp_chains(cap, hi2, dropped):
    feeds = {"X": grid_input((2, C, 3, 3), seed=3)}
    nodes = [
        helper.make_node("Clip", ["X", "zero", "six"], ["a"]),
        helper.make_node("Min", ["a", "cap"], ["m"]),
        helper.make_node("Clip", ["m", "zero", "hi2"], ["c"]),
        helper.make_node("Mul", ["c", "X"], ["Y"]),  # keeps the gradient input-dependent
    ]
    consts = {"zero": np.float32(0), "six": np.float32(6), "cap": per_channel(cap), "hi2": np.float32(hi2)}
    model = make_model(nodes, feeds, "Y", consts)
    new = assert_same_values_and_gradients(model, feeds, ["X"])
    assert (ops(new).count("Clip") == 1) == dropped
    if cap[0] >= 6.0:
        assert "Min" not in ops(new)


def test_pad_value_outside_the_range_keeps_the_clamp():
    feeds = {"X": grid_input((1, C, 4, 4), seed=4), "W": np.ones((C, 1, 3, 3), np.float32)}
    nodes = [
        helper.make_node("Relu", ["X"], ["a"]),
        helper.make_node("Pad", ["a", "pads", "minus"], ["p"]),
        helper.make_node("Clip", ["p", "zero", "six"], ["s"]),
        *conv_tail("s"),
    ]
    consts = {"zero": np.float32(0), "six": np.float32(6), "minus": np.float32(-1),
              "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}
    new = assert_same_values_and_gradients(make_model(nodes, feeds, "Y", consts), feeds, ["X", "W"])
    assert ops(new) == ["Relu", "Pad", "Clip", "Conv"]


@pytest.mark.parametrize("case", ["nonzero", "channel-axis", "other-reader"])
def test_pads_that_are_not_merged(case):
    feeds = {"X": grid_input((1, C, 4, 4), seed=5)}
    pads = [0, 1, 1, 1, 0, 1, 1, 1] if case == "channel-axis" else [0, 0, 1, 1, 0, 0, 1, 1]
    value = np.float32(0.5 if case == "nonzero" else 0.0)
    cin = C + 2 if case == "channel-axis" else C
    feeds["W"] = np.random.default_rng(6).uniform(-1, 1, (C, cin, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Pad", ["X", "pads", "v"], ["p"]),
        helper.make_node("Conv", ["p", "W"], ["c"], kernel_shape=[3, 3]),
    ]
    if case == "other-reader":
        nodes.append(helper.make_node("GlobalAveragePool", ["p"], ["r"]))
        nodes.append(helper.make_node("Mul", ["c", "r"], ["Y"]))
    else:
        nodes.append(helper.make_node("Identity", ["c"], ["Y"]))
    consts = {"pads": np.array(pads, np.int64), "v": value}
    model = make_model(nodes, feeds, "Y", consts)
    assert fold_pads_into_convs(list(model.graph.node), constants(model.graph), {"Y"}) == list(model.graph.node)
    assert_same_values_and_gradients(model, feeds, ["X", "W"], atol=1e-4)


def test_pad_read_by_two_convs_is_merged_into_both():
    feeds = {"X": grid_input((2, C, 5, 5), seed=7), "W": np.random.default_rng(8).uniform(-1, 1, (C, C, 3, 3)).astype(
        np.float32)}
    nodes = [
        helper.make_node("Pad", ["X", "pads"], ["p"]),
        helper.make_node("Conv", ["p", "W"], ["c1"], kernel_shape=[3, 3], pads=[1, 0, 0, 1]),
        helper.make_node("Conv", ["p", "W"], ["c2"], kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["c1"], ["r1"]),
        helper.make_node("Add", ["c2", "r1"], ["Y"]),
    ]
    model = make_model(nodes, feeds, "Y", {"pads": np.array([0, 0, 2, 1, 0, 0, 0, 1], np.int64)})
    new = assert_same_values_and_gradients(model, feeds, ["X", "W"], atol=1e-4)
    assert "Pad" not in ops(new)
    got = [list(helper.get_attribute_value(a)) for n in new.graph.node if n.op_type == "Conv" for a in n.attribute
           if a.name == "pads"]
    assert got == [[3, 1, 0, 2], [2, 1, 0, 1]]


def test_protected_outputs_are_kept():
    feeds = {"X": grid_input((2, C), seed=9)}
    nodes = [helper.make_node("Clip", ["X", "zero", "six"], ["a"]), helper.make_node("Relu", ["a"], ["Y"])]
    consts = {"zero": np.float32(0), "six": np.float32(6)}
    model = make_model(nodes, feeds, "Y", consts)
    got = drop_redundant_clamps(list(model.graph.node), constants(model.graph), {"Y"}, shapes(model))
    assert [n.op_type for n in got] == ["Clip", "Relu"]
    got = drop_redundant_clamps(list(model.graph.node), constants(model.graph), set(), shapes(model))
    assert [n.op_type for n in got] == ["Clip"]


def test_training_graph_of_the_mobilenet_like_model_pads_in_its_convs():
    tg = build_training_graph(tiny_classifier(), loss="ce")
    fwd = [n for n in tg.model.graph.node if not n.name.startswith("train/")]
    assert "Pad" not in [n.op_type for n in fwd]
    used = {i for n in tg.model.graph.node for i in n.input}
    assert all(i.name in used for i in tg.model.graph.initializer), "no dangling bound constants"
