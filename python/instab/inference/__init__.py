"""Inference: Pillow-exact preprocessing in C++ and the streaming ONNX Runtime :class:`Classifier`."""

from __future__ import annotations

from instab.inference.classifier import (
    EMBEDDING,
    Classifier,
    Prediction,
)
from instab.inference.preprocessing import (
    preprocess,
    resize_plan,
    short_side_for,
)
from instab.inference.resizers import RESIZERS

__all__ = [
    "Classifier",
    "EMBEDDING",
    "Prediction",
    "RESIZERS",
    "preprocess",
    "resize_plan",
    "short_side_for",
]
