"""A small helper that appends ONNX nodes and constants to a graph under unique names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


class NodeBuilder:
    """Collects new nodes and constant initializers, naming every tensor uniquely.

    ``shapes`` maps tensor names to their static shape (a list of ints, with
    ``None`` for unknown dims such as the batch) where known.
    """

    def __init__(self, prefix: str, taken: set[str], shapes: dict[str, list[int | None]] | None = None):
        self.prefix = prefix
        self.taken = set(taken)
        self.shapes: dict[str, list[int | None]] = dict(shapes or {})
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._consts: dict[tuple[Any, ...], str] = {}
        self._count = 0

    def fresh(self, hint: str) -> str:
        """A new tensor name that collides with nothing in the graph."""
        while True:
            self._count += 1
            name = f"{self.prefix}{hint}_{self._count}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, hint: str | None = None, **attrs: Any):
        """Append one node; return its output name (or a list when ``n_out`` > 1)."""
        outs = [self.fresh(hint or op_type.lower()) for _ in range(n_out)]
        node = helper.make_node(op_type, list(inputs), outs, name=self.fresh("node_" + op_type), **attrs)
        self.nodes.append(node)
        return outs[0] if n_out == 1 else outs

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        """A constant initializer (deduplicated for small values)."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 16 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.fresh("const")
        self.initializers.append(numpy_helper.from_array(arr, name))
        self.shapes[name] = list(arr.shape)
        if key is not None:
            self._consts[key] = name
        return name

    def ints(self, values: Sequence[int]) -> str:
        """An int64 1-D constant (axes, shapes, pads, slice bounds)."""
        return self.const(np.asarray(list(values), dtype=np.int64), np.int64)

    def shape(self, name: str) -> list[int | None] | None:
        return self.shapes.get(name)

    def reduce_sum(self, x: str, axes: Sequence[int], keepdims: bool) -> str:
        if not axes:
            return x
        return self.op("ReduceSum", [x, self.ints(axes)], keepdims=int(keepdims))

__all__ = [
    "NodeBuilder",
]
