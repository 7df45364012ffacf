"""The instability metric and label sets."""

from __future__ import annotations

from instab.metrics.instability import (
    ConfidenceSplit,
    GroupStats,
    InstabilityResult,
    RepeatAnalysis,
    instability,
)
from instab.metrics.labels import (
    PAD,
    normalize_label_sets,
)

__all__ = [
    "ConfidenceSplit",
    "GroupStats",
    "InstabilityResult",
    "PAD",
    "RepeatAnalysis",
    "instability",
    "normalize_label_sets",
]
