"""What ``instab mitigate`` measures for each model: instability between the two training devices (the
study's protocol), across the built-in devices and across held-out phones, accuracy per device, retention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instab import models
from instab.environments import devices as device_profiles
from instab.metrics.uncertainty import wilson_interval
from instab.studies.mitigation.finetune import FineTuner
from instab.studies.mitigation.measuring import measure
from instab.studies.mitigation.views import Views

#: The protocols: which evaluation views each instability is taken across (names set by :func:`protocols`).
PROTOCOLS = ("two_devices", "built_in", "held_out", "all")
#: The k of the instability measures: top-1, and top-3 (the study's top-k mitigation).
TOP_K = (1, 3)


def protocols(device: str, pair_device: str) -> dict[str, list[str]]:
    """The environment texts of each protocol: the pair, the built-in devices, the held-out ones, all together."""
    built_in = [f"device:{n}" for n in device_profiles.builtin_names()]
    held_out = [f"device:{n}" for n in device_profiles.HELD_OUT]
    everything = list(dict.fromkeys([device, pair_device, *built_in, *held_out]))
    return {"two_devices": [device, pair_device], "built_in": built_in, "held_out": held_out, "all": everything}


@dataclass
class EvaluationSet:
    """The evaluation images through every environment of :func:`protocols` (with the trainable part's inputs
    cached), the retention images (clean) and both label sets."""

    views: Views
    labels: list[list[int]]
    protocols: dict[str, list[str]]
    retention: Views | None  # one view: the retention images as they are
    retention_labels: list[list[int]]

    def columns(self, name: str) -> list[int]:
        """Positions in ``views`` of the environments of protocol ``name``."""
        return [self.views.names.index(t) for t in self.protocols[name]]


def _rate(unstable: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(unstable, n) if n else (float("nan"), float("nan"))
    return {"rate": unstable / n if n else float("nan"), "n_unstable": unstable, "n_images": n,
            "ci95": [float(lo), float(hi)]}


def measures(ranked: np.ndarray, retention: np.ndarray | None, data: EvaluationSet,
             top_k: Sequence[int] = TOP_K) -> dict[str, Any]:
    """Every measure of one model from its ranked classes on the evaluation views [n, views, >=k] and on the
    retention images [m, 1, >=1] (or None), as a dict ready for JSON.

    ``instability[protocol]["topK"]`` holds ``rate``, counts and a 95 % Wilson interval;
    ``accuracy`` is top-1 per environment; ``retention_accuracy`` top-1 on the retention images.
    """
    out: dict[str, Any] = {"instability": {}}
    for name in PROTOCOLS:
        cols = data.columns(name)
        out["instability"][name] = {}
        for k in top_k:
            m = measure(ranked[:, cols], data.labels, k)
            out["instability"][name][f"top{k}"] = _rate(m["n_unstable"], m["n_images"])
    out["accuracy"] = dict(zip(data.views.names, measure(ranked, data.labels, 1)["accuracy_per_device"], strict=True))
    out["retention_accuracy"] = (None if retention is None
                                 else measure(retention, data.retention_labels, 1)["accuracy"])
    return out


def evaluate(tuner: FineTuner, head: Any, data: EvaluationSet) -> dict[str, Any]:
    """:func:`measures` of a trained head (or the start model's) on the cached inputs of the views."""
    k = max(5, *TOP_K)
    retention = tuner.predict(head, data.retention, k=k) if data.retention is not None else None
    return measures(tuner.predict(head, data.views, k=k), retention, data)


def evaluate_model(tuner: FineTuner, model: models.Model, data: EvaluationSet) -> dict[str, Any]:
    """:func:`measures` of a whole model (e.g. int8) run on the views' images."""
    return measures(tuner.rank_images(model, data.views), tuner.rank_images(model, data.retention)
                    if data.retention is not None else None, data)


__all__ = ["PROTOCOLS", "TOP_K", "EvaluationSet", "evaluate", "evaluate_model", "measures", "protocols"]
