"""Gradient rules, one module per operator family; importing this package registers them all.

:mod:`~instab.train.rules.base` holds the registry and :class:`GradContext`;
:mod:`~instab.train.rules.elementwise`, :mod:`~instab.train.rules.shape`,
:mod:`~instab.train.rules.matrix` and :mod:`~instab.train.rules.conv` register
the rules. :func:`instab.train.autodiff.backward` walks a graph with them.
"""

from __future__ import annotations

# Imported for their side effect: each module registers its rules with base.rule.
from instab.train.rules import conv, elementwise, matrix, shape
from instab.train.rules.base import (
    GradContext,
    PairRule,
    Rule,
    UnsupportedOperatorError,
    find_pair_rule,
    find_rule,
    pair_rule,
    rule,
    supported_operators,
)

__all__ = [
    "GradContext",
    "PairRule",
    "Rule",
    "UnsupportedOperatorError",
    "conv",
    "elementwise",
    "find_pair_rule",
    "find_rule",
    "matrix",
    "pair_rule",
    "rule",
    "shape",
    "supported_operators",
]
