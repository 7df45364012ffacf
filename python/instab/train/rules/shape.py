"""Gradient rules of shape operators: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Pad, Slice, Concat."""

from __future__ import annotations

import numpy as np

from instab._shared.onnx_graph import attr
from instab.train.rules.base import UnsupportedOperatorError, rule


@rule("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def _reshape_back(ctx, node, dys, want):
    out: list[str | None] = [None] * len(node.input)
    out[0] = ctx.b.op("Reshape", [dys[0], ctx.b.op("Shape", [node.input[0]])])
    return out




@rule("Transpose")
def _transpose(ctx, node, dys, want):
    perm = attr(node, "perm")
    if perm is None:
        perm = list(reversed(range(len(ctx.shape(node.input[0], node)))))
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return [ctx.b.op("Transpose", [dys[0]], perm=inv)]


@rule("Pad")
def _pad(ctx, node, dys, want):
    b = ctx.b
    mode = attr(node, "mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise UnsupportedOperatorError(f"Pad node {node.name!r}: only mode=constant is differentiable (got {mode})")
    if any(want[1:]):
        raise UnsupportedOperatorError(f"Pad node {node.name!r}: pads and the pad value cannot be trained")
    if len(node.input) > 1 and node.input[1]:
        pads = ctx.constant(node.input[1], node, "pads").astype(np.int64).tolist()
    else:
        pads = list(attr(node, "pads"))
    rank = len(ctx.shape(node.input[0], node))
    axes = list(range(rank))
    if len(node.input) > 3 and node.input[3]:
        axes = [a % rank for a in ctx.constant(node.input[3], node, "axes").astype(np.int64).tolist()]
    k = len(axes)
    if any(p < 0 for p in pads):
        raise UnsupportedOperatorError(f"Pad node {node.name!r}: negative pads are not differentiable")
    starts = pads[:k]
    ends = [-p if p > 0 else np.iinfo(np.int64).max for p in pads[k:]]
    g = b.op("Slice", [dys[0], b.ints(starts), b.ints(ends), b.ints(axes)])
    return [g] + [None] * (len(node.input) - 1)


@rule("Slice")
def _slice(ctx, node, dys, want):
    # Slices with constant, positive steps: scatter back by padding with zeros.
    b = ctx.b
    x = node.input[0]
    shape = ctx.shape(x, node)
    rank = len(shape)
    starts = ctx.constant(node.input[1], node, "starts").astype(np.int64).tolist()
    ends = ctx.constant(node.input[2], node, "ends").astype(np.int64).tolist()
    axes = list(range(len(starts)))
    if len(node.input) > 3 and node.input[3]:
        axes = ctx.constant(node.input[3], node, "axes").astype(np.int64).tolist()
    if len(node.input) > 4 and node.input[4] and any(
        s != 1 for s in ctx.constant(node.input[4], node, "steps").tolist()
    ):
        raise UnsupportedOperatorError(f"Slice node {node.name!r}: only unit steps are differentiable")
    pads = [0] * (2 * rank)
    for s, e, a in zip(starts, ends, axes, strict=False):
        a %= rank
        d = ctx.static_dims(x, node, [a])[0]
        s = min(max(s + d if s < 0 else s, 0), d)
        e = min(max(e + d if e < 0 else e, 0), d)
        pads[a], pads[rank + a] = s, d - e
    return [b.op("Pad", [dys[0], b.ints(pads)])] + [None] * (len(node.input) - 1)


@rule("Concat")
def _concat(ctx, node, dys, want):
    b = ctx.b
    axis = attr(node, "axis")
    rank = len(ctx.shape(node.output[0], node))
    axis %= rank
    out: list[str | None] = []
    start = 0
    for x, w in zip(node.input, want, strict=True):
        d = ctx.static_dims(x, node, [axis])[0]
        out.append(b.op("Slice", [dys[0], b.ints([start]), b.ints([start + d]), b.ints([axis])]) if w else None)
        start += d
    return out


__all__: list[str] = []  # rules are registered on import, nothing else is exported
