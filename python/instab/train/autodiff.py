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
from instab.train.rules import GradContext, Rule, UnsupportedOperatorError, find_rule, rule, supported_operators


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
        fn = find_rule(n.op_type)
        if fn is None:
            raise UnsupportedOperatorError(
                f"cannot differentiate operator {n.op_type!r} (node {n.name!r}); "
                f"supported: {', '.join(supported_operators())}"
            )
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


__all__ = [
    "GradContext",
    "Rule",
    "UnsupportedOperatorError",
    "backward",
    "rule",
    "supported_operators",
]
