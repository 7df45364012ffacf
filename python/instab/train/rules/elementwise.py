"""Gradient rules of elementwise operators and the softmax family.

Identity, Dropout, Cast, Relu, Clip, Min, Max, Add, Sum, Sub, Neg, Mul, Div,
Sigmoid, Softmax, LogSoftmax. Broadcast inputs get their gradient summed back to
their own shape (:meth:`GradContext.unbroadcast`).
"""

from __future__ import annotations

import numpy as np
import onnx

from instab._shared.onnx_graph import attr
from instab.train.rules.base import UnsupportedOperatorError, masked, rule


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
    for i, x in enumerate(node.input):
        eq = b.op("Equal", [x, y])
        if taken is None:
            mask = eq
        else:
            mask = b.op("And", [eq, b.op("Not", [taken])])
        taken = eq if taken is None else b.op("Or", [taken, eq])
        if want[i]:
            g = masked(b, mask, dy)
            out.append(ctx.unbroadcast(g, x, y, node))
        else:
            out.append(None)
    return out


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
