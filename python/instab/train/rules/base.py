"""The gradient-rule registry and what a rule may use (:class:`GradContext`).

A rule gets the node, the gradients of the loss with respect to its outputs and
which inputs need a gradient, and appends nodes computing those gradients
through the context's :class:`~instab.train.builder.NodeBuilder`. Rules are
registered with :func:`rule` by the operator-family modules of this package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx

from instab.train.builder import NodeBuilder

Rule = Callable[["GradContext", onnx.NodeProto, list[str | None], list[bool]], list[str | None]]
#: A rule for two nodes in a row (the second reads the first's only use): (ctx, first, second, d second) ->
#: the gradient with respect to the first node's input, or None where the pair is not its case.
PairRule = Callable[["GradContext", onnx.NodeProto, onnx.NodeProto, str], str | None]
_RULES: dict[str, Rule] = {}
_PAIR_RULES: dict[tuple[str, str], PairRule] = {}


class UnsupportedOperatorError(ValueError):
    """The graph needs the gradient of an operator instab cannot differentiate."""


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    """Decorator: register ``fn`` as the gradient rule of ``op_types``."""

    def wrap(fn: Rule) -> Rule:
        for op in op_types:
            _RULES[op] = fn
        return fn

    return wrap


def pair_rule(first: Sequence[str], second: Sequence[str]) -> Callable[[PairRule], PairRule]:
    """Decorator: register ``fn`` for a node of type in ``first`` read only by a node of type in ``second``.

    One rule for the pair emits fewer nodes than the two rules in turn (e.g. one mask for two clamps).
    """

    def wrap(fn: PairRule) -> PairRule:
        for a in first:
            for b in second:
                _PAIR_RULES[(a, b)] = fn
        return fn

    return wrap


def find_pair_rule(first: str, second: str) -> PairRule | None:
    """The rule registered for ``first`` followed by ``second``, or None."""
    return _PAIR_RULES.get((first, second))


def find_rule(op_type: str) -> Rule | None:
    """The gradient rule registered for ``op_type``, or None."""
    return _RULES.get(op_type)


def supported_operators() -> list[str]:
    """Operator types that have a gradient rule."""
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
            dim = s[d]
            if dim is None:
                raise UnsupportedOperatorError(
                    f"{node.op_type} node {node.name!r}: dimension {d} of {name!r} must be static for its gradient"
                )
            out.append(int(dim))
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
            static = [d for d in ts if d is not None]
            if len(static) == len(ts):
                g = self.b.op("Reshape", [g, self.b.ints(static)])
            else:
                g = self.b.op("Reshape", [g, self.b.op("Shape", [target])])
        return g


def masked(b: NodeBuilder, mask: str, dy: str) -> str:
    """``dy`` where the boolean ``mask`` holds, else 0."""
    # Mul by the mask cast to float: ONNX Runtime's Where is several times slower.
    return b.op("Mul", [dy, b.op("Cast", [mask], to=onnx.TensorProto.FLOAT)])


__all__ = [
    "GradContext",
    "PairRule",
    "Rule",
    "UnsupportedOperatorError",
    "find_pair_rule",
    "find_rule",
    "masked",
    "pair_rule",
    "rule",
    "supported_operators",
]
