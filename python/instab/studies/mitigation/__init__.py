"""The mitigation study: stability fine-tuning per loss x noise scheme, top-k and a consistent raw pipeline.

:func:`run_mitigation` fine-tunes one start model (by default the dequantized shared
MobileNetV2) on training images seen through one virtual device (x), with x' from
each noise scheme of :mod:`instab.studies.mitigation.noise`, picks alpha (and sigma) on a
validation split of the training images, and measures accuracy per device and
instability across the evaluation devices on images never used in training.
The same table holds plain fine-tuning, the label-free mode, top-3, the
consistent raw pipeline and the int8 re-quantized models.

With ``trainable="last:N"`` only the last layers train: the frozen backbone runs once
per image view and the head trains on cached features (:mod:`instab.train.head`).
With ``trainable="all"`` every layer trains on the views themselves (slower, and on
these virtual devices much more effective: the device differences are low-level).

The modules: ``config`` (the knobs), ``noise`` (the schemes), ``data`` (the two image
sets), ``views`` (images through devices), ``measuring`` (accuracy and instability),
``finetune`` (training and predicting), ``table`` (the rows and the result),
``context`` (what the steps share), the steps in ``steps``, ``stability`` and ``int8``,
``outputs`` (the files), and ``run`` (:func:`run_mitigation`, the steps in order).
The command line is :mod:`instab.cli.mitigation` (also ``python -m instab.studies.mitigation``).
"""

from __future__ import annotations

from instab.studies.mitigation.config import DEFAULT_MODEL, DEFAULT_SCHEMES, STABILITY_LOSSES, MitigationConfig
from instab.studies.mitigation.data import OverlapError, check_disjoint, load_image_sets, split_labels
from instab.studies.mitigation.finetune import FineTuner, as_float_model
from instab.studies.mitigation.measuring import measure
from instab.studies.mitigation.noise import (
    DevicePairs,
    DistortionNoise,
    GaussianNoise,
    NoiseScheme,
    NoNoise,
    PairedImages,
    Subsample,
    draw_seed,
    make_scheme,
)
from instab.studies.mitigation.outputs import COLUMNS, write_outputs
from instab.studies.mitigation.run import run_mitigation
from instab.studies.mitigation.table import MitigationResult
from instab.studies.mitigation.views import Views

__all__ = [
    "COLUMNS",
    "DEFAULT_MODEL",
    "DEFAULT_SCHEMES",
    "STABILITY_LOSSES",
    "DevicePairs",
    "DistortionNoise",
    "FineTuner",
    "GaussianNoise",
    "MitigationConfig",
    "MitigationResult",
    "NoNoise",
    "NoiseScheme",
    "OverlapError",
    "PairedImages",
    "Subsample",
    "Views",
    "as_float_model",
    "check_disjoint",
    "draw_seed",
    "load_image_sets",
    "make_scheme",
    "measure",
    "run_mitigation",
    "split_labels",
    "write_outputs",
]
