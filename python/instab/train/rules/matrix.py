"""Gradient rules of matrix products: MatMul (2-D or batched operands) and Gemm."""

from __future__ import annotations

import numpy as np

from instab._shared.onnx_graph import attr
from instab.train.builder import NodeBuilder
from instab.train.rules.base import UnsupportedOperatorError, rule


def _swap_last(b: NodeBuilder, x: str, rank: int) -> str:
    perm = list(range(rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return b.op("Transpose", [x], perm=perm)


@rule("MatMul")
def _matmul(ctx, node, dys, want):
    b = ctx.b
    a, w = node.input
    y, dy = node.output[0], dys[0]
    ra, rw = len(ctx.shape(a, node)), len(ctx.shape(w, node))
    if ra < 2 or rw < 2:
        raise UnsupportedOperatorError(f"MatMul node {node.name!r}: 1-D operands are not differentiable")
    ry = len(ctx.shape(y, node))
    ga = gw = None
    if want[0]:
        ga = ctx.unbroadcast(b.op("MatMul", [dy, _swap_last(b, w, rw)]), a, y, node)
    if want[1]:
        if rw == 2 and ra > 2:
            # Fold the batch axes into the rows: one GEMM instead of a batched product and a sum.
            k = ctx.static_dims(a, node, [ra - 1])[0]
            n = ctx.static_dims(y, node, [ry - 1])[0]
            a2 = b.op("Reshape", [a, b.ints([-1, k])])
            d2 = b.op("Reshape", [dy, b.ints([-1, n])])
            gw = b.op("Gemm", [a2, d2], transA=1)
        else:
            gw = ctx.unbroadcast(b.op("MatMul", [_swap_last(b, a, ra), dy]), w, y, node)
    return [ga, gw]


@rule("Gemm")
def _gemm(ctx, node, dys, want):
    b = ctx.b
    a, w = node.input[0], node.input[1]
    dy = dys[0]
    alpha, beta = attr(node, "alpha", 1.0), attr(node, "beta", 1.0)
    ta, tb = attr(node, "transA", 0), attr(node, "transB", 0)
    out: list[str | None] = [None] * len(node.input)
    if want[0]:
        # dA' = alpha dY B'^T ; dA = dA'^T when transA.
        out[0] = b.op("Gemm", [w, dy], alpha=alpha, transA=tb, transB=1) if ta else b.op(
            "Gemm", [dy, w], alpha=alpha, transB=1 - tb
        )
    if want[1]:
        # dB' = alpha A'^T dY ; dB = dB'^T when transB.
        out[1] = b.op("Gemm", [dy, a], alpha=alpha, transA=1, transB=ta) if tb else b.op(
            "Gemm", [a, dy], alpha=alpha, transA=1 - ta
        )
    if len(node.input) > 2 and want[2]:
        g = dy if beta == 1.0 else b.op("Mul", [dy, b.const(np.float32(beta))])
        out[2] = ctx.unbroadcast(g, node.input[2], node.output[0], node)
    return out


__all__: list[str] = []  # rules are registered on import, nothing else is exported
