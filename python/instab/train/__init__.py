"""Stability training with ONNX Runtime as the only engine.

:func:`build_training_graph` turns a float ONNX classifier into one ONNX graph
that computes the stability-training loss, its gradients (reverse mode, see
:mod:`instab.train.autodiff`) and an SGD/Adam update; :class:`Trainer` runs it
step after step with the parameters kept in ONNX Runtime, saves and resumes
checkpoints, and exports the fine-tuned inference model.
"""

from instab.train.autodiff import UnsupportedOperatorError, supported_operators
from instab.train.graph import TrainingGraph, build_gradient_graph, build_training_graph
from instab.train.layers import parameter_layers
from instab.train.loop import StepResult, Trainer
from instab.train.optim import Optimizer

__all__ = [
    "Optimizer",
    "StepResult",
    "Trainer",
    "TrainingGraph",
    "UnsupportedOperatorError",
    "build_gradient_graph",
    "build_training_graph",
    "parameter_layers",
    "supported_operators",
]
