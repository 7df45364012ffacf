"""Reverse-mode differentiation of ONNX graphs, emitted as ONNX nodes.

Each supported operator has a rule that, given the node and the gradient of the
loss with respect to its output, appends nodes computing the gradients with
respect to the inputs that need one. :func:`backward` walks the graph in
reverse topological order, sums gradients of tensors used more than once, and
returns the gradient tensor name for each requested tensor.

Nodes that do not depend on a trainable tensor (input decoding, casts,
dequantization of the image) need no rule, so any operator may appear there.

The rules live in :mod:`instab.train.rules`, one module per operator family.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx

from instab.train.builder import NodeBuilder
from instab.train.rules import (
    GradContext,
    Rule,
    UnsupportedOperatorError,
    find_pair_rule,
    find_rule,
    rule,
    supported_operators,
)


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
    paired = _pairs(nodes, seeds, wrt)
    for n in reversed(nodes):
        if not any(o in grads for o in n.output):
            continue
        want = [bool(i) and i in needs and i in reach for i in n.input]
        if not any(want):
            continue
        if id(n) in paired and _apply_pair_rule(ctx, paired[id(n)], n, want, needs, grads):
            continue
        fn = _rule_of(n)
        dys = [_sum(builder, grads[o]) if o in grads else None for o in n.output]
        dxs = fn(ctx, n, dys, want)
        for name, w, dx in zip(n.input, want, dxs, strict=True):
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


def _rule_of(n: onnx.NodeProto) -> Rule:
    """The gradient rule of ``n``; a clear error naming the operator when there is none."""
    if n.domain not in ("", "ai.onnx"):
        raise UnsupportedOperatorError(f"cannot differentiate operator {n.domain}.{n.op_type} (node {n.name!r})")
    fn = find_rule(n.op_type)
    if fn is None:
        raise UnsupportedOperatorError(
            f"cannot differentiate operator {n.op_type!r} (node {n.name!r}); "
            f"supported: {', '.join(supported_operators())}"
        )
    return fn


def _apply_pair_rule(
    ctx: GradContext, first: onnx.NodeProto, n: onnx.NodeProto, want: list[bool], needs: set[str],
    grads: dict[str, list[str]],
) -> bool:
    """Differentiate ``first`` and ``n`` together when only their data input needs a gradient; True if done.

    ``first``'s output then gets no gradient, so the walk skips its own rule.
    """
    if not want[0] or any(want[1:]) or first.input[0] not in needs or any(i in needs for i in first.input[1:]):
        return False
    fn = find_pair_rule(first.op_type, n.op_type)
    dx = fn(ctx, first, n, _sum(ctx.b, grads[n.output[0]])) if fn else None
    if dx is None:
        return False
    grads.setdefault(first.input[0], []).append(dx)
    return True


def _pairs(nodes: Sequence[onnx.NodeProto], seeds: dict[str, str], wrt: list[str]) -> dict[int, onnx.NodeProto]:
    """{id(second node): first node} for two nodes in a row with a pair rule, the first's output read only there."""
    uses: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    made_by = {o: n for n in nodes for o in n.output}
    out = {}
    for n in nodes:
        p = made_by.get(n.input[0]) if n.input else None
        if p is None or len(p.output) != 1 or find_pair_rule(p.op_type, n.op_type) is None:
            continue
        y = p.output[0]
        if uses.get(y) == 1 and y not in seeds and y not in wrt and n.domain in ("", "ai.onnx"):
            out[id(n)] = p
    return out


__all__ = [
    "GradContext",
    "Rule",
    "UnsupportedOperatorError",
    "backward",
    "rule",
    "supported_operators",
]
