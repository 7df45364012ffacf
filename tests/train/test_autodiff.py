"""Finite-difference checks of every operator gradient rule on small random graphs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import helper

from instab.train import UnsupportedOperatorError, build_gradient_graph, supported_operators
from tests._support.training import fd_check, make_model, session

R = np.random.default_rng(1234)


def rand(*shape, lo=-1.0, hi=1.0):
    return R.uniform(lo, hi, size=shape).astype(np.float32)


def away_from(x: np.ndarray, points, gap=0.02) -> np.ndarray:
    """Move values off the kinks of piecewise-linear ops so that central differences are exact."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, gap, -gap)
    return x


CONV_CASES = [
    # (N, C, H, W, M, kernel, strides, pads, group, bias, auto_pad)
    (2, 3, 5, 7, 4, (3, 3), (1, 1), (1, 1, 1, 1), 1, True, None),
    (1, 3, 8, 8, 4, (3, 3), (2, 2), (0, 0, 1, 1), 1, True, None),  # TF-style asymmetric SAME
    (2, 4, 6, 6, 6, (3, 3), (2, 2), (0, 0, 0, 0), 2, False, None),  # grouped, unused last row
    (2, 6, 7, 5, 6, (3, 3), (1, 1), (1, 1, 1, 1), 6, True, None),  # depthwise
    (2, 4, 9, 9, 4, (3, 3), (2, 2), (1, 1, 1, 1), 4, True, None),  # depthwise strided
    (3, 5, 4, 3, 7, (1, 1), (1, 1), (0, 0, 0, 0), 1, True, None),  # pointwise
    (1, 2, 1, 1, 3, (1, 1), (1, 1), (0, 0, 0, 0), 1, True, None),  # 1x1 image
    (2, 2, 1, 3, 2, (1, 3), (1, 2), (0, 1, 0, 1), 1, True, None),  # 1x3 image
    (2, 2, 3, 1, 4, (3, 1), (1, 1), (1, 0, 1, 0), 2, False, None),  # 3x1 image, grouped
    (2, 3, 7, 6, 4, (3, 2), (2, 3), (0, 0, 0, 0), 1, True, "SAME_UPPER"),
    (2, 4, 5, 5, 8, (3, 3), (1, 1), (1, 1, 1, 1), 4, True, None),  # depth multiplier 2
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[f"conv{i}" for i in range(len(CONV_CASES))])
def test_conv(case):
    n, c, h, w, m, k, s, p, g, bias, auto_pad = case
    feeds = {"X": rand(n, c, h, w), "W": rand(m, c // g, *k)}
    ins = ["X", "W"]
    if bias:
        feeds["B"] = rand(m)
        ins.append("B")
    attrs = {"kernel_shape": list(k), "strides": list(s), "group": g}
    if auto_pad:
        attrs["auto_pad"] = auto_pad
    else:
        attrs["pads"] = list(p)
    model = make_model([helper.make_node("Conv", ins, ["Y"], **attrs)], feeds, "Y")
    fd_check(model, feeds, ins)


def test_conv1d():
    feeds = {"X": rand(2, 3, 9), "W": rand(4, 3, 3), "B": rand(4)}
    node = helper.make_node("Conv", ["X", "W", "B"], ["Y"], kernel_shape=[3], strides=[2], pads=[1, 0])
    fd_check(make_model([node], feeds, "Y"), feeds, ["X", "W", "B"])


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 1, 0)])
def test_average_pool(count_include_pad, pads):
    feeds = {"X": rand(2, 3, 7, 6)}
    node = helper.make_node(
        "AveragePool", ["X"], ["Y"], kernel_shape=[3, 2], strides=[2, 1], pads=list(pads),
        count_include_pad=count_include_pad,
    )
    fd_check(make_model([node], feeds, "Y"), feeds, ["X"])


def test_global_average_pool():
    feeds = {"X": rand(2, 3, 5, 7)}
    fd_check(make_model([helper.make_node("GlobalAveragePool", ["X"], ["Y"])], feeds, "Y"), feeds, ["X"])


def test_relu():
    feeds = {"X": away_from(rand(3, 4, 5), [0.0])}
    fd_check(make_model([helper.make_node("Relu", ["X"], ["Y"])], feeds, "Y"), feeds, ["X"])


@pytest.mark.parametrize("bounds", [("lo", "hi"), ("lo", ""), ("", "hi")])
def test_clip(bounds):
    feeds = {"X": away_from(rand(2, 3, 4, lo=-2, hi=2), [-0.5, 0.6])}
    consts = {"lo": np.float32(-0.5), "hi": np.float32(0.6)}
    node = helper.make_node("Clip", ["X", *bounds], ["Y"])
    fd_check(make_model([node], feeds, "Y", consts={k: v for k, v in consts.items() if k in bounds}), feeds, ["X"])


@pytest.mark.parametrize("op", ["Min", "Max"])
def test_min_max_constant(op):
    feeds = {"X": away_from(rand(2, 3, 4), [0.3])}
    node = helper.make_node(op, ["X", "six"], ["Y"])
    fd_check(make_model([node], feeds, "Y", consts={"six": np.float32(0.3)}), feeds, ["X"])


@pytest.mark.parametrize("op", ["Min", "Max"])
def test_min_max_broadcast(op):
    a, b = rand(2, 3, 4), rand(3, 1)
    feeds = {"A": a, "B": b}
    diff = a - b
    feeds["A"] = (b + np.where(np.abs(diff) < 0.02, 0.05 * np.sign(diff + 1e-9), diff)).astype(np.float32)
    node = helper.make_node(op, ["A", "B"], ["Y"])
    fd_check(make_model([node], feeds, "Y"), feeds, ["A", "B"])


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
@pytest.mark.parametrize("shapes", [((2, 3, 4, 5), (3, 1, 1)), ((1, 4), (3, 1)), ((5,), (5,)), ((2, 1, 3), (2, 4, 1))])
def test_binary_broadcast(op, shapes):
    feeds = {"A": rand(*shapes[0]), "B": rand(*shapes[1], lo=0.5, hi=1.5)}
    fd_check(make_model([helper.make_node(op, ["A", "B"], ["Y"])], feeds, "Y"), feeds, ["A", "B"])


def test_sum_three_inputs():
    feeds = {"A": rand(2, 3), "B": rand(3), "C": rand(2, 1)}
    fd_check(make_model([helper.make_node("Sum", ["A", "B", "C"], ["Y"])], feeds, "Y"), feeds, ["A", "B", "C"])


@pytest.mark.parametrize("pads", [[0, 0, 1, 1, 0, 0, 1, 2], [0, 1, 0, 0, 0, 0, 2, 0]])
def test_pad(pads):
    feeds = {"X": rand(2, 3, 4, 5)}
    node = helper.make_node("Pad", ["X", "pads", "v"], ["Y"], mode="constant")
    consts = {"pads": np.array(pads, np.int64), "v": np.float32(0.25)}
    fd_check(make_model([node], feeds, "Y", consts=consts), feeds, ["X"])


def test_transpose():
    feeds = {"X": rand(2, 3, 4, 5)}
    node = helper.make_node("Transpose", ["X"], ["Y"], perm=[0, 3, 1, 2])
    fd_check(make_model([node], feeds, "Y"), feeds, ["X"])


def test_shape_ops():
    feeds = {"X": rand(2, 3, 1, 1)}
    nodes = [
        helper.make_node("Squeeze", ["X", "ax"], ["s"]),
        helper.make_node("Unsqueeze", ["s", "ax0"], ["u"]),
        helper.make_node("Reshape", ["u", "shape"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Mul", ["f", "f"], ["Y"]),  # keeps the gradient input-dependent
    ]
    consts = {"ax": np.array([2, 3], np.int64), "ax0": np.array([0], np.int64), "shape": np.array([3, 2], np.int64)}
    fd_check(make_model(nodes, feeds, "Y", consts=consts), feeds, ["X"])


@pytest.mark.parametrize(
    "shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 2))]
)
def test_matmul(shapes):
    feeds = {"A": rand(*shapes[0]), "B": rand(*shapes[1])}
    fd_check(make_model([helper.make_node("MatMul", ["A", "B"], ["Y"])], feeds, "Y"), feeds, ["A", "B"])


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [(5,), (3, 5), (1, 1)])
def test_gemm(trans_a, trans_b, c_shape):
    a = rand(4, 3) if trans_a else rand(3, 4)
    b = rand(5, 4) if trans_b else rand(4, 5)
    feeds = {"A": a, "B": b, "C": rand(*c_shape)}
    node = helper.make_node("Gemm", ["A", "B", "C"], ["Y"], alpha=0.7, beta=1.3, transA=trans_a, transB=trans_b)
    fd_check(make_model([node], feeds, "Y"), feeds, ["A", "B", "C"])


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax(op, axis):
    feeds = {"X": rand(2, 4, 3, lo=-3, hi=3)}
    fd_check(make_model([helper.make_node(op, ["X"], ["Y"], axis=axis)], feeds, "Y"), feeds, ["X"])


def test_concat_slice_sigmoid():
    feeds = {"A": rand(2, 3), "B": rand(2, 4)}
    nodes = [
        helper.make_node("Concat", ["A", "B"], ["c"], axis=1),
        helper.make_node("Slice", ["c", "st", "en", "ax"], ["s"]),
        helper.make_node("Sigmoid", ["s"], ["Y"]),
    ]
    consts = {"st": np.array([1], np.int64), "en": np.array([-1], np.int64), "ax": np.array([1], np.int64)}
    fd_check(make_model(nodes, feeds, "Y", consts=consts), feeds, ["A", "B"])


def test_chain_with_reused_tensor():
    """A residual block: the gradient of a tensor used twice is the sum of both paths."""
    feeds = {"X": rand(2, 4, 5, 5), "W1": rand(4, 4, 1, 1), "W2": rand(4, 1, 3, 3)}
    nodes = [
        helper.make_node("Conv", ["X", "W1"], ["a"], kernel_shape=[1, 1]),
        helper.make_node("Clip", ["a", "zero", "six"], ["b"]),
        helper.make_node("Conv", ["b", "W2"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
        helper.make_node("Add", ["X", "c"], ["Y"]),
    ]
    consts = {"zero": np.float32(0), "six": np.float32(0.3)}
    fd_check(make_model(nodes, feeds, "Y", consts=consts), feeds, ["X", "W1", "W2"])


def test_unsupported_operator_is_named():
    feeds = {"X": rand(2, 3)}
    model = make_model([helper.make_node("Tanh", ["X"], ["Y"])], feeds, "Y")
    with pytest.raises(UnsupportedOperatorError, match="'Tanh'"):
        build_gradient_graph(model, "Y", ["X"])


def test_non_differentiable_prefix_needs_no_rule():
    """Operators before the trainable part (here Floor) are never differentiated."""
    feeds = {"X": rand(2, 3) * 4, "W": rand(3, 2)}
    nodes = [helper.make_node("Floor", ["X"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["Y"])]
    fd_check(make_model(nodes, feeds, "Y"), feeds, ["W"])


def test_supported_list_covers_the_issue():
    need = {
        "Conv", "Relu", "Clip", "Min", "Max", "Add", "Mul", "Pad", "Transpose", "GlobalAveragePool", "AveragePool",
        "Squeeze", "Unsqueeze", "Reshape", "Flatten", "MatMul", "Gemm", "Softmax", "LogSoftmax",
    }
    assert need <= set(supported_operators())


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 2), cg=st.integers(1, 3), mg=st.integers(1, 2), group=st.integers(1, 3),
    h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 3), kw=st.integers(1, 3),
    sh=st.integers(1, 3), sw=st.integers(1, 3), pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
    bias=st.booleans(), seed=st.integers(0, 2**16),
)
def test_conv_property(n, cg, mg, group, h, w, kh, kw, sh, sw, pads, bias, seed):
    """Random Conv geometries (grouped, strided, padded, odd and 1-pixel sizes) against finite differences."""
    assume(h + pads[0] + pads[2] >= kh and w + pads[1] + pads[3] >= kw)
    rng = np.random.default_rng(seed)
    c, m = cg * group, mg * group
    feeds = {"X": rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32),
             "W": rng.uniform(-1, 1, (m, cg, kh, kw)).astype(np.float32)}
    ins = ["X", "W"]
    if bias:
        feeds["B"] = rng.uniform(-1, 1, m).astype(np.float32)
        ins.append("B")
    node = helper.make_node("Conv", ins, ["Y"], kernel_shape=[kh, kw], strides=[sh, sw], pads=pads, group=group)
    fd_check(make_model([node], feeds, "Y"), feeds, ins, seed=seed)


@pytest.mark.parametrize("first", ["Relu", "Clip"])
@pytest.mark.parametrize("second", ["Min", "Max"])
def test_clamp_then_per_channel_bound_uses_one_mask(first, second):
    """Relu/Clip read only by a Min/Max with a per-channel constant: one mask, equal to the two rules' product.

    Inputs sit exactly on the bounds and on the caps (ties), where the Min/Max rule gives the
    gradient to its first input and Clip/Relu block it; checked against that numpy mask.
    """
    cap = np.array([0.0, 0.25, 0.5, 1.0], np.float32).reshape(1, 4, 1)
    x = R.choice(np.array([-1.0, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0], np.float32), size=(2, 4, 5))
    feeds = {"X": x}
    consts = {"cap": cap, "lo": np.float32(0.0), "hi": np.float32(1.0)}
    clamp = helper.make_node(first, ["X"] if first == "Relu" else ["X", "lo", "hi"], ["a"])
    nodes = [clamp, helper.make_node(second, ["a", "cap"], ["Y"])]
    model = make_model(nodes, feeds, "Y", consts={k: v for k, v in consts.items() if k in clamp.input or k == "cap"})
    gm = build_gradient_graph(model, "Y", ["X"])
    assert "Equal" not in [n.op_type for n in gm.graph.node]  # the pair rule replaced the Min/Max mask
    dy = R.standard_normal(x.shape).astype(np.float32)
    (got,) = session(gm).run(["X::grad"], {"X": x, "Y::seed": dy})
    y = np.maximum(x, 0) if first == "Relu" else np.clip(x, 0, 1)
    inside = (y > 0) & ((y < 1) if first == "Clip" else True)
    takes = y <= cap if second == "Min" else y >= cap
    np.testing.assert_array_equal(got, np.where(inside & takes, dy, 0))
    feeds = {"X": away_from(rand(2, 4, 5, lo=-0.5, hi=1.5), [0.0, 0.25, 0.5, 1.0])}
    fd_check(model, feeds, ["X"])


def test_clamp_with_two_readers_keeps_the_separate_rules():
    feeds = {"X": away_from(rand(2, 3, 4), [0.0, 0.3])}
    nodes = [
        helper.make_node("Relu", ["X"], ["a"]),
        helper.make_node("Min", ["a", "cap"], ["m"]),
        helper.make_node("Mul", ["m", "a"], ["Y"]),
    ]
    model = make_model(nodes, feeds, "Y", consts={"cap": np.full((3, 1), 0.3, np.float32)})
    assert "Equal" in [n.op_type for n in build_gradient_graph(model, "Y", ["X"]).graph.node]
    fd_check(model, feeds, ["X"])


@pytest.mark.parametrize("pads", [(0, 1, 2, 1), (2, 2, 0, 0), (3, 0, 0, 3)])
def test_grouped_stride_one_conv_input_gradient(pads):
    """Stride-1 input gradients run as a Conv with the flipped, per-group transposed kernel (pads < kernel),
    else as a ConvTranspose (pads >= kernel); groups with several channels on both sides."""
    feeds = {"X": rand(2, 4, 5, 6), "W": rand(6, 2, 3, 3)}
    node = helper.make_node("Conv", ["X", "W"], ["Y"], kernel_shape=[3, 3], pads=list(pads), group=2)
    model = make_model([node], feeds, "Y")
    types = [n.op_type for n in build_gradient_graph(model, "Y", ["X"]).graph.node]
    assert ("ConvTranspose" in types) == (max(pads) >= 3)
    fd_check(model, feeds, ["X", "W"])
