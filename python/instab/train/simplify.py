"""Function-preserving clean-up of the forward graph before differentiation.

Dequantized QDQ models carry chains such as ``Conv -> Clip(0, 6) -> Clip(lo, hi)``
(the ReLU6, then the saturation of the removed fake quantization) or
``Relu -> Min(x, 6)``. Each link costs a pass over the activation forward and a
mask backward; a chain of clamps is one clamp, ``Clip(x, max(lo), min(hi))``
(:func:`fold_clamps`). A clamp whose input already lies within its bounds is
dropped (:func:`drop_redundant_clamps`), and a zero ``Pad`` in front of a ``Conv``
becomes the Conv's own padding (:func:`fold_pads_into_convs`).
The inference model exported after training keeps the original graph.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from instab._shared.onnx_graph import attr, producers

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

@dataclass(frozen=True)
class _Range:
    """Known bounds of a tensor's values; ``*_blocked``: no gradient flows back where the value equals the bound.

    Clip and Relu block at their bounds (their masks are strict), so a later clamp
    whose bounds contain the range changes neither the values nor the gradients.
    """

    lo: float = -_INF
    hi: float = _INF
    lo_blocked: bool = False
    hi_blocked: bool = False

    def clamp(self, lo: float, hi: float) -> _Range:
        """The range after ``Clip(lo, hi)``: a bound the clip moves, or meets, blocks."""
        new_lo, lo_b = (lo, True) if lo >= self.lo else (self.lo, self.lo_blocked)
        new_hi, hi_b = (hi, True) if hi <= self.hi else (self.hi, self.hi_blocked)
        if not new_lo <= new_hi:  # disjoint intervals or NaN bounds: the output is a constant; claim nothing
            return _Range()
        return _Range(new_lo, new_hi, lo_b, hi_b)

    def contained_in(self, lo: float, hi: float) -> bool:
        """True if ``Clip(lo, hi)`` of this range is the identity, gradients included."""
        lo_ok = lo < self.lo or (lo == self.lo and (self.lo_blocked or lo == -_INF))
        hi_ok = hi > self.hi or (hi == self.hi and (self.hi_blocked or hi == _INF))
        return lo_ok and hi_ok

    def with_value(self, v: float) -> _Range:
        """The range after padding with the constant ``v`` (padded cells pass no gradient back)."""
        lo, lo_b = (v, True) if v < self.lo else (self.lo, self.lo_blocked)
        hi, hi_b = (v, True) if v > self.hi else (self.hi, self.hi_blocked)
        return _Range(lo, hi, lo_b, hi_b)

    def min_with(self, c: np.ndarray) -> _Range:
        """The range of ``Min(x, c)``; values equal to an element of c may carry a gradient (ties go to x)."""
        cmin, cmax = float(c.min()), float(c.max())
        lo, lo_b = (cmin, True) if cmin < self.lo else (self.lo, self.lo_blocked)
        hi, hi_b = (cmax, False) if cmax < self.hi else (self.hi, self.hi_blocked)
        return _Range(lo, hi, lo_b, hi_b)

    def max_with(self, c: np.ndarray) -> _Range:
        """The range of ``Max(x, c)``, mirroring :meth:`min_with`."""
        cmin, cmax = float(c.min()), float(c.max())
        lo, lo_b = (cmin, False) if cmin > self.lo else (self.lo, self.lo_blocked)
        hi, hi_b = (cmax, True) if cmax > self.hi else (self.hi, self.hi_blocked)
        return _Range(lo, hi, lo_b, hi_b)


def _elementwise_constant(node: onnx.NodeProto, consts: dict[str, np.ndarray], shapes: dict[str, list] | None):
    """The constant second operand of a binary Min/Max that does not broadcast the first, else None."""
    if len(node.input) != 2 or node.input[1] not in consts:
        return None
    c = consts[node.input[1]]
    xs = (shapes or {}).get(node.input[0])
    if c.dtype != np.float32 or c.size == 0 or xs is None or c.ndim > len(xs):
        return None
    if any(d != 1 and d != xd for d, xd in zip(c.shape[::-1], xs[::-1], strict=False)):
        return None
    return c


def _pad_value(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> float | None:
    """The fill value of a constant-mode Pad with constant pads, else None."""
    mode = attr(node, "mode", b"constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
        return None
    if len(node.input) < 2 or node.input[1] not in consts:
        return None
    if len(node.input) > 2 and node.input[2]:
        v = consts.get(node.input[2])
        return None if v is None or v.size != 1 else float(v.reshape(-1)[0])
    return 0.0


def drop_redundant_clamps(
    nodes: list[onnx.NodeProto],
    consts: dict[str, np.ndarray],
    protected: set[str],
    shapes: dict[str, list] | None = None,
) -> list[onnx.NodeProto]:
    """Drop Relu / Clip / Min / Max nodes that cannot change their input, nor its gradient.

    Value ranges are followed through clamps, constant Min/Max and constant Pads:
    ``Clip(0, 6) -> Pad(0) -> Clip(0, 6)`` keeps one clamp. The consumers of a
    dropped node read its input instead; outputs in ``protected`` are kept.
    """
    ranges: dict[str, _Range] = {}
    alias: dict[str, str] = {}
    out: list[onnx.NodeProto] = []
    for n in nodes:
        if any(i in alias for i in n.input):
            n = copy.deepcopy(n)
            n.input[:] = [alias.get(i, i) for i in n.input]
        r = ranges.get(n.input[0]) if n.input else None
        y = n.output[0] if n.output else ""
        keep, new = _range_step(n, r, consts, shapes)
        if not keep and y not in protected:
            alias[y] = n.input[0]
            if r is not None:
                ranges[y] = r
            continue
        if new is not None:
            ranges[y] = new
        out.append(n)
    return out


def _range_step(
    n: onnx.NodeProto, r: _Range | None, consts: dict[str, np.ndarray], shapes: dict[str, list] | None
) -> tuple[bool, _Range | None]:
    """(whether ``n`` is needed, the range of its output) given the range ``r`` of its first input."""
    iv = _interval(n, consts, shapes)
    if iv is not None and n.op_type in ("Relu", "Clip"):
        if r is not None and r.contained_in(*iv):
            return False, r
        return True, (r or _Range()).clamp(*iv)
    if n.op_type in ("Min", "Max"):
        c = _elementwise_constant(n, consts, shapes)
        if c is None:
            return True, None
        if r is not None and (float(c.min()) >= r.hi if n.op_type == "Min" else float(c.max()) <= r.lo):
            return False, r  # Min(x, c) == x everywhere, and x takes the gradient at ties
        return True, (r or _Range()).min_with(c) if n.op_type == "Min" else (r or _Range()).max_with(c)
    if n.op_type == "Pad" and r is not None:
        v = _pad_value(n, consts)
        return True, None if v is None else r.with_value(v)
    return True, None


def fold_pads_into_convs(
    nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray], protected: set[str]
) -> list[onnx.NodeProto]:
    """Merge a zero-valued constant Pad of the spatial axes into the Conv nodes that read it.

    The Conv then pads by itself: no padded copy of the activation forward, and no
    Slice of its gradient backward. Only Pads read by nothing but Convs (as their
    input, with explicit pads) are merged.
    """
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    merged: dict[int, list[int]] = {}  # id(Pad node) -> its spatial pads (begins, then ends)
    for n in nodes:
        pads = _spatial_zero_pads(n, consts)
        if pads is None or n.output[0] in protected:
            continue
        users = readers.get(n.output[0], [])
        if users and all(_plain_conv_input(u, n.output[0], len(pads) // 2) for u in users):
            merged[id(n)] = pads
    if not merged:
        return nodes
    source = {n.output[0]: (n.input[0], merged[id(n)]) for n in nodes if id(n) in merged}
    out: list[onnx.NodeProto] = []
    for n in nodes:
        if id(n) in merged:
            continue
        if n.op_type == "Conv" and n.input[0] in source:
            x, extra = source[n.input[0]]
            r = len(extra) // 2
            own = list(attr(n, "pads", [0] * (2 * r)))
            n = copy.deepcopy(n)
            n.input[0] = x
            for a in list(n.attribute):
                if a.name == "pads":
                    n.attribute.remove(a)
            n.attribute.append(helper.make_attribute("pads", [p + q for p, q in zip(own, extra, strict=True)]))
        out.append(n)
    return out


def _spatial_zero_pads(n: onnx.NodeProto, consts: dict[str, np.ndarray]) -> list[int] | None:
    """The spatial pads (begins, then ends) of a zero-valued, non-negative Pad of axes 2.., else None."""
    if n.op_type != "Pad" or _pad_value(n, consts) != 0.0 or (len(n.input) > 3 and n.input[3]):
        return None
    pads = consts[n.input[1]].astype(np.int64).tolist()
    rank = len(pads) // 2
    if rank < 3 or any(p < 0 for p in pads) or any(pads[a] or pads[rank + a] for a in (0, 1)):
        return None
    return pads[2:rank] + pads[rank + 2 :]


def _plain_conv_input(n: onnx.NodeProto, x: str, r: int) -> bool:
    """True if ``n`` is a Conv reading ``x`` as its input only, with explicit pads over ``r`` spatial axes."""
    auto_pad = attr(n, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if n.op_type != "Conv" or auto_pad != "NOTSET" or n.input[0] != x or x in n.input[1:]:
        return False
    kernel = attr(n, "kernel_shape")
    return kernel is None or len(kernel) == r


def simplify(
    nodes: list[onnx.NodeProto],
    consts: dict[str, np.ndarray],
    protected: set[str],
    shapes: dict[str, list] | None = None,
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """All the passes of this module, in order; returns the nodes and the new bound constants."""
    nodes, inits = fold_clamps(nodes, consts, protected, shapes)
    consts = {**consts, **{i.name: numpy_helper.to_array(i) for i in inits}}
    nodes = fold_pads_into_convs(drop_redundant_clamps(nodes, consts, protected, shapes), consts, protected)
    used = {i for n in nodes for i in n.input}
    return nodes, [i for i in inits if i.name in used]


__all__ = [
    "drop_redundant_clamps",
    "fold_clamps",
    "fold_pads_into_convs",
    "simplify",
]
