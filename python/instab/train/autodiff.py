"""Reverse-mode differentiation of ONNX graphs, emitted as ONNX nodes.

Each supported operator has a rule that, given the node and the gradient of the
loss with respect to its output, appends nodes computing the gradients with
respect to the inputs that need one. :func:`backward` walks the graph in
reverse topological order, sums gradients of tensors used more than once, and
returns the gradient tensor name for each requested tensor.

Nodes that do not depend on a trainable tensor (input decoding, casts,
dequantization of the image) need no rule, so any operator may appear there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import onnx

from instab._shared.onnx_graph import attr
from instab.train.builder import NodeBuilder

Rule = Callable[["GradContext", onnx.NodeProto, list[str | None], list[bool]], list[str | None]]
_RULES: dict[str, Rule] = {}


class UnsupportedOperatorError(ValueError):
    """The graph needs the gradient of an operator instab cannot differentiate."""


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    """Decorator: register ``fn`` as the gradient rule of ``op_types``."""

    def wrap(fn: Rule) -> Rule:
        for op in op_types:
            _RULES[op] = fn
        return fn

    return wrap


def supported_operators() -> list[str]:
    """Operator types that :func:`backward` can differentiate."""
    return sorted(_RULES)


class GradContext:
    """What a rule may use: the node builder, static shapes and constant values."""

    def __init__(self, builder: NodeBuilder, constants: dict[str, np.ndarray]):
        self.b = builder
        self.constants = constants

    def shape(self, name: str, node: onnx.NodeProto) -> list[int | None]:
        s = self.b.shape(name)
        if s is None:
            raise UnsupportedOperatorError(
                f"{node.op_type} node {node.name!r}: the shape of tensor {name!r} is unknown "
                "(run onnx shape inference on the model, or give the model static shapes)"
            )
        return s

    def static_dims(self, name: str, node: onnx.NodeProto, dims: Sequence[int]) -> list[int]:
        s = self.shape(name, node)
        out = []
        for d in dims:
            if s[d] is None:
                raise UnsupportedOperatorError(
                    f"{node.op_type} node {node.name!r}: dimension {d} of {name!r} must be static for its gradient"
                )
            out.append(int(s[d]))
        return out

    def constant(self, name: str, node: onnx.NodeProto, what: str) -> np.ndarray:
        if name not in self.constants:
            raise UnsupportedOperatorError(
                f"{node.op_type} node {node.name!r}: {what} ({name!r}) must be a constant initializer"
            )
        return self.constants[name]

    def unbroadcast(self, grad: str, target: str, result: str, node: onnx.NodeProto) -> str:
        """Sum ``grad`` (shaped like ``result``) down to the shape of the broadcast input ``target``."""
        ts, rs = self.shape(target, node), self.shape(result, node)
        lead = len(rs) - len(ts)
        axes = list(range(lead))
        for i, d in enumerate(ts):
            if d == 1 and rs[lead + i] != 1:
                axes.append(lead + i)
        if not axes:
            return grad
        g = self.b.reduce_sum(grad, axes, keepdims=True)
        if lead:
            if all(d is not None for d in ts):
                g = self.b.op("Reshape", [g, self.b.ints(ts)])
            else:
                g = self.b.op("Reshape", [g, self.b.op("Shape", [target])])
        return g


def _sum(b: NodeBuilder, grads: list[str]) -> str:
    if len(grads) == 1:
        return grads[0]
    return b.op("Sum", grads, hint="gsum")


def backward(
    nodes: Sequence[onnx.NodeProto],
    seeds: dict[str, str],
    wrt: Iterable[str],
    builder: NodeBuilder,
    constants: dict[str, np.ndarray],
) -> dict[str, str]:
    """Append gradient nodes to ``builder``; return {tensor in ``wrt``: its gradient tensor}.

    ``nodes`` must be topologically sorted. ``seeds`` maps output tensors to the
    tensors holding d(loss)/d(output). A tensor in ``wrt`` that the seeds do not
    depend on gets a zero gradient.
    """
    wrt = list(wrt)
    ctx = GradContext(builder, constants)
    # Forward: which tensors depend on something we differentiate for.
    needs = set(wrt)
    for n in nodes:
        if any(i in needs for i in n.input if i):
            needs.update(o for o in n.output if o)
    # Backward reachability: which tensors the seeds depend on.
    reach = set(seeds)
    for n in reversed(nodes):
        if any(o in reach for o in n.output):
            reach.update(i for i in n.input if i)
    grads: dict[str, list[str]] = {t: [g] for t, g in seeds.items()}
    for n in reversed(nodes):
        if not any(o in grads for o in n.output):
            continue
        want = [bool(i) and i in needs and i in reach for i in n.input]
        if not any(want):
            continue
        if n.domain not in ("", "ai.onnx"):
            raise UnsupportedOperatorError(f"cannot differentiate operator {n.domain}.{n.op_type} (node {n.name!r})")
        fn = _RULES.get(n.op_type)
        if fn is None:
            raise UnsupportedOperatorError(
                f"cannot differentiate operator {n.op_type!r} (node {n.name!r}); "
                f"supported: {', '.join(supported_operators())}"
            )
        dys = [_sum(builder, grads[o]) if o in grads else None for o in n.output]
        dxs = fn(ctx, n, dys, want)
        for name, w, dx in zip(n.input, want, dxs):
            if w and dx is not None:
                grads.setdefault(name, []).append(dx)
    out = {}
    for t in wrt:
        if t in grads:
            out[t] = _sum(builder, grads[t])
        else:
            shape = builder.shape(t)
            if shape is None or any(d is None for d in shape):
                raise ValueError(f"tensor {t!r} does not affect the loss and its shape is unknown")
            out[t] = builder.const(np.zeros(shape, np.float32))
    return out


# ---------------------------------------------------------------- elementwise


def _masked(b: NodeBuilder, mask: str, dy: str) -> str:
    # Mul by the mask cast to float: ONNX Runtime's Where is several times slower.
    return b.op("Mul", [dy, b.op("Cast", [mask], to=onnx.TensorProto.FLOAT)])


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
    return [_masked(b, mask, dys[0])]


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
    return [_masked(b, mask, dys[0])] + [None] * (len(node.input) - 1)


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
            g = _masked(b, mask, dy)
            out.append(ctx.unbroadcast(g, x, y, node))
        else:
            out.append(None)
    return out


@rule("Add", "Sum")
def _add(ctx, node, dys, want):
    return [ctx.unbroadcast(dys[0], x, node.output[0], node) if w else None for x, w in zip(node.input, want)]


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


# ---------------------------------------------------------------- shape ops


def _reshape_back(ctx, node, dys, want):
    out: list[str | None] = [None] * len(node.input)
    out[0] = ctx.b.op("Reshape", [dys[0], ctx.b.op("Shape", [node.input[0]])])
    return out


for _op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
    _RULES[_op] = _reshape_back


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


@rule("GlobalAveragePool")
def _gap(ctx, node, dys, want):
    b = ctx.b
    x = node.input[0]
    shape = ctx.shape(x, node)
    spatial = ctx.static_dims(x, node, range(2, len(shape)))
    scale = b.const(np.float32(1.0 / float(np.prod(spatial))))
    return [b.op("Expand", [b.op("Mul", [dys[0], scale]), b.op("Shape", [x])])]


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
    for s, e, a in zip(starts, ends, axes):
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
    for x, w in zip(node.input, want):
        d = ctx.static_dims(x, node, [axis])[0]
        out.append(b.op("Slice", [dys[0], b.ints([start]), b.ints([start + d]), b.ints([axis])]) if w else None)
        start += d
    return out


# ---------------------------------------------------------------- softmax family


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


# ---------------------------------------------------------------- matrix products


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


# ---------------------------------------------------------------- convolution and pooling


def _conv_geometry(ctx: GradContext, node: onnx.NodeProto, kernel: list[int]):
    """Static (input spatial, output spatial, strides, pads) of a Conv/AveragePool node."""
    x = node.input[0]
    r = len(kernel)
    spatial = ctx.static_dims(x, node, range(2, 2 + r))
    strides = list(attr(node, "strides", [1] * r))
    dil = list(attr(node, "dilations", [1] * r))
    if any(d != 1 for d in dil):
        raise UnsupportedOperatorError(f"{node.op_type} node {node.name!r}: dilations other than 1 are not supported")
    auto_pad = attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", "VALID"):
        pads = list(attr(node, "pads", [0] * (2 * r))) if auto_pad == "NOTSET" else [0] * (2 * r)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * r)
        for i in range(r):
            out = -(-spatial[i] // strides[i])
            total = max((out - 1) * strides[i] + kernel[i] - spatial[i], 0)
            small = total // 2
            pads[i], pads[r + i] = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
    else:
        raise UnsupportedOperatorError(f"{node.op_type} node {node.name!r}: auto_pad={auto_pad} is not supported")
    out_spatial = [(spatial[i] + pads[i] + pads[r + i] - kernel[i]) // strides[i] + 1 for i in range(r)]
    return spatial, out_spatial, strides, pads


def _transpose_input(b, dy, w, node, spatial, out_spatial, strides, pads, kernel, group):
    r = len(kernel)
    opad = [spatial[i] + pads[i] + pads[r + i] - (strides[i] * (out_spatial[i] - 1) + kernel[i]) for i in range(r)]
    return b.op(
        "ConvTranspose", [dy, w], group=group, strides=strides, pads=pads, kernel_shape=kernel, output_padding=opad
    )


@rule("Conv")
def _conv(ctx, node, dys, want):
    b = ctx.b
    x, w = node.input[0], node.input[1]
    dy = dys[0]
    wshape = ctx.static_dims(w, node, range(len(ctx.shape(w, node))))
    m, cg, kernel = wshape[0], wshape[1], wshape[2:]
    r = len(kernel)
    group = attr(node, "group", 1)
    spatial, out_spatial, strides, pads = _conv_geometry(ctx, node, kernel)
    out: list[str | None] = [None] * len(node.input)
    if want[0]:
        out[0] = _transpose_input(b, dy, w, node, spatial, out_spatial, strides, pads, kernel, group)
    if want[1]:
        out[1] = _conv_weight_grad(ctx, x, dy, m, cg, kernel, group, spatial, out_spatial, strides, pads)
    if len(node.input) > 2 and node.input[2] and want[2]:
        out[2] = b.reduce_sum(dy, [0] + list(range(2, 2 + r)), keepdims=False)
    return out


def _conv_weight_grad(ctx, x, dy, m, cg, kernel, group, spatial, out_spatial, strides, pads) -> str:
    b = ctx.b
    r = len(kernel)
    sp = list(range(3, 3 + r))
    if group == 1 and all(k == 1 for k in kernel) and all(s == 1 for s in strides) and not any(pads):
        # Pointwise: dW[m, c] = sum over batch and pixels of dY[n, m, p] X[n, c, p] -- one batched GEMM.
        d3 = b.op("Reshape", [dy, b.ints([0, m, -1])])
        x3 = b.op("Transpose", [b.op("Reshape", [x, b.ints([0, cg, -1])])], perm=[0, 2, 1])
        g = b.reduce_sum(b.op("MatMul", [d3, x3]), [0], keepdims=False)
        return b.op("Reshape", [g, b.ints([m, cg] + [1] * r)])
    # General (grouped, depthwise, strided): correlate the input with dY, treating the batch as channels.
    mg = m // group
    xg = b.op("Reshape", [x, b.ints([0, group, cg] + spatial)])
    xg = b.op("Transpose", [xg], perm=[2, 1, 0] + sp)  # [cg, g, N, *S]
    xg = b.op("Reshape", [xg, b.ints([cg, -1] + spatial)])  # [cg, g*N, *S]
    dg = b.op("Reshape", [dy, b.ints([0, group, mg] + out_spatial)])
    dg = b.op("Transpose", [dg], perm=[1, 2, 0] + sp)  # [g, mg, N, *So]
    dg = b.op("Reshape", [dg, b.ints([m, -1] + out_spatial)])  # [M, N, *So]
    full = [spatial[i] + pads[i] + pads[r + i] - (out_spatial[i] - 1) * strides[i] for i in range(r)]
    g = b.op("Conv", [xg, dg], group=group, dilations=strides, pads=pads, kernel_shape=out_spatial)  # [cg, M, *full]
    g = b.op("Transpose", [g], perm=[1, 0] + list(range(2, 2 + r)))
    if full != kernel:  # rows past the last stride window take no part
        g = b.op("Slice", [g, b.ints([0] * r), b.ints(kernel), b.ints(list(range(2, 2 + r)))])
    return g


@rule("AveragePool")
def _avgpool(ctx, node, dys, want):
    b = ctx.b
    x = node.input[0]
    kernel = list(attr(node, "kernel_shape"))
    r = len(kernel)
    if attr(node, "ceil_mode", 0):
        raise UnsupportedOperatorError(f"AveragePool node {node.name!r}: ceil_mode=1 is not supported")
    channels = ctx.static_dims(x, node, [1])[0]
    spatial, out_spatial, strides, pads = _conv_geometry(ctx, node, kernel)
    dy = dys[0]
    if attr(node, "count_include_pad", 0) or not any(pads):
        scale = b.op("Mul", [dy, b.const(np.float32(1.0 / np.prod(kernel)))])
    else:
        # Border windows average over fewer pixels: divide each output by its own count.
        counts = np.ones([1] * r, np.float32)
        for i in range(r):
            pos = np.arange(out_spatial[i]) * strides[i] - pads[i]
            n = np.minimum(pos + kernel[i], spatial[i]) - np.maximum(pos, 0)
            counts = counts[..., None] * n.astype(np.float32) if i else n.astype(np.float32)
        counts = counts.reshape([1, 1] + out_spatial)
        scale = b.op("Mul", [dy, b.const((1.0 / counts).astype(np.float32))])
    ones = b.const(np.ones([channels, 1] + kernel, np.float32))
    return [_transpose_input(b, scale, ones, node, spatial, out_spatial, strides, pads, kernel, channels)]

__all__ = [
    "GradContext",
    "Rule",
    "UnsupportedOperatorError",
    "backward",
    "rule",
    "supported_operators",
]
