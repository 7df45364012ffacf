"""Gradient rules of elementwise operators and the softmax family.

Identity, Dropout, Cast, Relu, Clip, Min, Max, Add, Sum, Sub, Neg, Mul, Div,
Sigmoid, Softmax, LogSoftmax. Broadcast inputs get their gradient summed back to
their own shape (:meth:`GradContext.unbroadcast`). A Relu/Clip read only by a Min/Max
with a constant bound (a per-channel cap) gets one mask for the two.
"""

from __future__ import annotations

import numpy as np
import onnx

from instab._shared.onnx_graph import attr
from instab.train.rules.base import GradContext, UnsupportedOperatorError, masked, pair_rule, rule


@rule("Identity", "Dropout")
def _identity(ctx, node, dys, want):
    return [dys[0]] + [None] * (len(node.input) - 1)


@rule("Cast")
def _cast(ctx, node, dys, want):
    if attr(node, "to") != onnx.TensorProto.FLOAT:
        raise UnsupportedOperatorError(f"Cast node {node.name!r}: only casts to float32 are differentiable")
    return [dys[0]]


@rule("Relu")
def _relu(ctx, node, dys, want):
    b = ctx.b
    mask = b.op("Greater", [node.output[0], b.const(np.float32(0))])
    return [masked(b, mask, dys[0])]


@rule("Clip")
def _clip(ctx, node, dys, want):
    b = ctx.b
    y = node.output[0]  # lo < y < hi exactly where lo < x < hi; keeping y frees x earlier
    if any(want[1:]):
        raise UnsupportedOperatorError(f"Clip node {node.name!r}: its min/max bounds cannot be trained")
    if len(node.input) == 1 and (attr(node, "min") is not None or attr(node, "max") is not None):
        lo, hi = attr(node, "min"), attr(node, "max")  # opset < 11 form
        lo = b.const(np.float32(lo)) if lo is not None else ""
        hi = b.const(np.float32(hi)) if hi is not None else ""
    else:
        lo = node.input[1] if len(node.input) > 1 else ""
        hi = node.input[2] if len(node.input) > 2 else ""
    mask = None
    if lo:
        mask = b.op("Greater", [y, lo])
    if hi:
        m2 = b.op("Less", [y, hi])
        mask = m2 if mask is None else b.op("And", [mask, m2])
    if mask is None:
        return [dys[0]] + [None] * (len(node.input) - 1)
    return [masked(b, mask, dys[0])] + [None] * (len(node.input) - 1)


@rule("Min", "Max")
def _minmax(ctx, node, dys, want):
    b = ctx.b
    y, dy = node.output[0], dys[0]
    out: list[str | None] = []
    taken = None  # ties: the first input that equals the result takes the gradient
    last = max(i for i, w in enumerate(want) if w)
    for i, x in enumerate(node.input[: last + 1]):  # inputs after the last wanted one change no mask
        eq = b.op("Equal", [x, y])
        if want[i]:
            mask = eq if taken is None else b.op("And", [eq, b.op("Not", [taken])])
            out.append(ctx.unbroadcast(masked(b, mask, dy), x, y, node))
        else:
            out.append(None)
        if i < last:
            taken = eq if taken is None else b.op("Or", [taken, eq])
    return out + [None] * (len(node.input) - last - 1)


def _clamp_bounds(ctx: GradContext, node: onnx.NodeProto) -> tuple[float, float] | None:
    """The constant scalar (lo, hi) of a Relu or Clip node, else None."""
    if node.op_type == "Relu":
        return 0.0, float("inf")
    if len(node.input) == 1:  # opset < 11 form
        lo, hi = attr(node, "min"), attr(node, "max")
        return float("-inf") if lo is None else float(lo), float("inf") if hi is None else float(hi)
    out = []
    for k, default in ((1, float("-inf")), (2, float("inf"))):
        name = node.input[k] if len(node.input) > k else ""
        v = ctx.constants.get(name) if name else np.float32(default)
        if v is None or v.size != 1:
            return None
        out.append(float(np.asarray(v).reshape(-1)[0]))
    return out[0], out[1]


@pair_rule(["Relu", "Clip"], ["Min", "Max"])
def _clamp_then_bound(ctx, clamp, bound, dy):
    """``Min(Clip(x, lo, hi), c)`` (or Max) with a constant c: dx = dy where lo < y < hi and y <= c, y the clamp.

    ``y <= c`` is ``y < nextafter(c, +inf)`` exactly, so one Less against a merged bound
    tensor replaces the Min's Equal mask; ties still pass, as in the Min rule.
    """
    b = ctx.b
    y = clamp.output[0]
    bounds = _clamp_bounds(ctx, clamp)
    c = ctx.constants.get(bound.input[1]) if len(bound.input) == 2 and bound.input[0] == y else None
    shape = ctx.b.shape(y)
    if bounds is None or c is None or c.dtype != np.float32 or not np.all(np.isfinite(c)) or shape is None:
        return None
    if c.ndim > len(shape) or any(d != 1 and d != s for d, s in zip(c.shape[::-1], shape[::-1], strict=False)):
        return None  # c would broadcast y: the Min's result has another shape
    lo, hi = bounds
    if bound.op_type == "Min":
        lo_t, hi_t = lo, np.minimum(np.nextafter(c, np.float32(np.inf)), np.float32(hi))
    else:
        lo_t, hi_t = np.maximum(np.nextafter(c, np.float32(-np.inf)), np.float32(lo)), hi
    mask = None
    for op, t in (("Greater", lo_t), ("Less", hi_t)):
        if np.ndim(t) == 0 and abs(float(t)) == float("inf"):
            continue
        m = b.op(op, [y, b.const(np.asarray(t, np.float32))])
        mask = m if mask is None else b.op("And", [mask, m])
    return dy if mask is None else masked(b, mask, dy)


@rule("Add", "Sum")
def _add(ctx, node, dys, want):
    y = node.output[0]
    return [ctx.unbroadcast(dys[0], x, y, node) if w else None for x, w in zip(node.input, want, strict=True)]


@rule("Sub")
def _sub(ctx, node, dys, want):
    a, c = node.input
    ga = ctx.unbroadcast(dys[0], a, node.output[0], node) if want[0] else None
    gc = None
    if want[1]:
        gc = ctx.unbroadcast(ctx.b.op("Neg", [dys[0]]), c, node.output[0], node)
    return [ga, gc]


@rule("Neg")
def _neg(ctx, node, dys, want):
    return [ctx.b.op("Neg", [dys[0]])]


@rule("Mul")
def _mul(ctx, node, dys, want):
    a, c = node.input
    b = ctx.b
    ga = ctx.unbroadcast(b.op("Mul", [dys[0], c]), a, node.output[0], node) if want[0] else None
    gc = ctx.unbroadcast(b.op("Mul", [dys[0], a]), c, node.output[0], node) if want[1] else None
    return [ga, gc]


@rule("Div")
def _div(ctx, node, dys, want):
    a, c = node.input
    b = ctx.b
    ga = ctx.unbroadcast(b.op("Div", [dys[0], c]), a, node.output[0], node) if want[0] else None
    gc = None
    if want[1]:  # d(a/c)/dc = -y/c
        t = b.op("Neg", [b.op("Div", [b.op("Mul", [dys[0], node.output[0]]), c])])
        gc = ctx.unbroadcast(t, c, node.output[0], node)
    return [ga, gc]


@rule("Sigmoid")
def _sigmoid(ctx, node, dys, want):
    b = ctx.b
    y = node.output[0]
    return [b.op("Mul", [dys[0], b.op("Mul", [y, b.op("Sub", [b.const(np.float32(1)), y])])])]


@rule("Softmax")
def _softmax(ctx, node, dys, want):
    b = ctx.b
    y, dy = node.output[0], dys[0]
    axis = attr(node, "axis", -1)
    s = b.op("ReduceSum", [b.op("Mul", [dy, y]), b.ints([axis])], keepdims=1)
    return [b.op("Mul", [y, b.op("Sub", [dy, s])])]


@rule("LogSoftmax")
def _log_softmax(ctx, node, dys, want):
    b = ctx.b
    y, dy = node.output[0], dys[0]
    axis = attr(node, "axis", -1)
    s = b.op("ReduceSum", [dy, b.ints([axis])], keepdims=1)
    return [b.op("Sub", [dy, b.op("Mul", [b.op("Exp", [y]), s])])]


__all__: list[str] = []  # rules are registered on import, nothing else is exported
