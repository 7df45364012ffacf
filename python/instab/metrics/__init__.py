"""The instability metric, label sets, and the uncertainty of what they measure."""

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
from instab.metrics.uncertainty import (
    McNemarResult,
    bootstrap_interval,
    mcnemar,
    wilson_interval,
)

__all__ = [
    "ConfidenceSplit",
    "GroupStats",
    "InstabilityResult",
    "McNemarResult",
    "PAD",
    "RepeatAnalysis",
    "bootstrap_interval",
    "instability",
    "mcnemar",
    "normalize_label_sets",
    "wilson_interval",
]
