"""What the steps of one study share: the knobs, the fine-tuner, the training and evaluation views, the table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from instab._shared.progress import Progress
from instab.studies.mitigation.config import MitigationConfig
from instab.studies.mitigation.finetune import FineTuner
from instab.studies.mitigation.measuring import measure
from instab.studies.mitigation.table import Table
from instab.studies.mitigation.views import Views
from instab.train.dataset import LabeledSet


@dataclass
class TrainingViews:
    """The training images seen through each training environment, their labels and the validation split.

    ``views`` holds only images every environment could capture (all ``ok``), x's
    environment first and the second device's next; ``fit`` and ``val`` are sorted
    row numbers of the search's training and validation parts.
    """

    views: Views
    labels: np.ndarray  # int64 [n]: the (first) class of each image
    fit: np.ndarray
    val: np.ndarray

    @property
    def n(self) -> int:
        """Number of training images."""
        return len(self.labels)

    @property
    def x(self) -> np.ndarray:
        """Features of x: the training device's views."""
        return self.views.computed_features()[0]

    @property
    def second(self) -> np.ndarray:
        """Features of the second device's views."""
        return self.views.computed_features()[1]

    @property
    def x_images(self) -> np.ndarray:
        """The training device's uint8 views."""
        return self.views.images[0]

    @property
    def second_images(self) -> np.ndarray:
        """The second device's uint8 views."""
        return self.views.images[1]

    @property
    def val_labels(self) -> list[list[int]]:
        """Label sets of the validation rows."""
        return [[int(self.labels[i])] for i in self.val]


@dataclass
class StudyContext:
    """The state the steps of one :func:`run_mitigation` call read and add to (rows in ``table``, ``search``)."""

    config: MitigationConfig
    seed: int
    log: Progress
    tuner: FineTuner
    train: TrainingViews
    evals: LabeledSet  # the evaluation images and their labels
    views: Views  # the evaluation images through every evaluation environment, with features
    baseline: dict[str, Any]  # measures of the start model on ``views``
    baseline_ranked: np.ndarray  # its ranked predictions [n, views, 5]
    table: Table
    search: list[dict[str, Any]] = field(default_factory=list)  # one record per validation run

    def measure(self, head: onnx.ModelProto, views: Views | None = None, k: int = 1) -> dict[str, Any]:
        """Measures of a trained head on the evaluation views (or on ``views`` of the same images)."""
        return measure(self.tuner.predict(head, self.views if views is None else views), self.evals.labels, k)


__all__ = ["StudyContext", "TrainingViews"]
