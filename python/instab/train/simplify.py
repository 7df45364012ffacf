"""Function-preserving clean-up of the forward graph before differentiation.

Dequantized QDQ models carry chains such as ``Conv -> Clip(0, 6) -> Clip(lo, hi)``
(the ReLU6, then the saturation of the removed fake quantization) or
``Relu -> Min(x, 6)``. Each link costs a pass over the activation forward and a
mask backward; a chain of clamps is one clamp, ``Clip(x, max(lo), min(hi))``.
The inference model exported after training keeps the original graph.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper

from instab._shared.onnx_graph import producers

_INF = float("inf")


def _interval(
    node: onnx.NodeProto, consts: dict[str, np.ndarray], shapes: dict[str, list] | None = None
) -> tuple[float, float] | None:
    """The clamp interval of an activation node, or None if it is not a clamp with constant bounds."""

    def scalar(name: str) -> float | None:
        v = consts.get(name)
        if v is None or v.dtype != np.float32 or v.size == 0 or not np.all(v == v.reshape(-1)[0]):
            return None
        if v.size > 1 or v.ndim > 0:  # a uniform tensor acts as a scalar if it does not broadcast x
            xs = (shapes or {}).get(node.input[0])
            if xs is None or len(xs) < v.ndim:
                return None
            # Broadcasting aligns trailing dims; x may have more dims than v (not strict).
            if any(d != 1 and d != xd for d, xd in zip(v.shape[::-1], xs[::-1], strict=False)):
                return None
        return float(v.reshape(-1)[0])

    op = node.op_type
    if op == "Relu":
        return (0.0, _INF)
    if op == "Clip" and len(node.input) >= 1:
        lo = scalar(node.input[1]) if len(node.input) > 1 and node.input[1] else -_INF
        hi = scalar(node.input[2]) if len(node.input) > 2 and node.input[2] else _INF
        if lo is None or hi is None or any(a.name in ("min", "max") for a in node.attribute):
            return None
        return (lo, hi)
    if op in ("Min", "Max") and len(node.input) == 2:
        c = scalar(node.input[1])
        if c is None:
            return None
        return (-_INF, c) if op == "Min" else (c, _INF)
    return None


def fold_clamps(
    nodes: list[onnx.NodeProto],
    consts: dict[str, np.ndarray],
    protected: set[str],
    shapes: dict[str, list] | None = None,
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Merge chains of Relu / Clip / Min / Max with constant scalar bounds into single Clip nodes.

    A link is merged into its successor only when its output feeds nothing else
    and is not in ``protected``. Returns the new node list and the new bound constants.
    """
    uses = Counter(i for n in nodes for i in n.input if i)
    producer = producers(nodes)
    merged: dict[str, tuple[str, float, float]] = {}  # output -> (source input, lo, hi)
    dropped: set[int] = set()
    for n in nodes:
        iv = _interval(n, consts, shapes)
        if iv is None:
            continue
        src, (lo, hi) = n.input[0], iv
        p = producer.get(src)
        if p is not None and src in merged and uses[src] == 1 and src not in protected:
            psrc, plo, phi = merged[src]
            nlo, nhi = max(lo, plo), min(hi, phi)
            if nlo <= nhi:
                dropped.add(id(p))
                src, lo, hi = psrc, nlo, nhi
        merged[n.output[0]] = (src, lo, hi)
    if not dropped:
        return nodes, []
    out: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    for n in nodes:
        if id(n) in dropped:
            continue
        key = n.output[0] if n.output else None
        if key in merged and _interval(n, consts, shapes) is not None and merged[key][0] != n.input[0]:
            src, lo, hi = merged[key]
            names = []
            for tag, v in (("lo", lo), ("hi", hi)):
                if abs(v) == _INF:
                    names.append("")
                else:
                    name = f"train/clamp_{tag}_{len(inits)}"
                    inits.append(numpy_helper.from_array(np.array(v, np.float32), name))
                    names.append(name)
            n = helper.make_node("Clip", [src, *names], [key], name=(n.name or key) + "/folded")
        out.append(n)
    return out, inits

__all__ = [
    "fold_clamps",
]
