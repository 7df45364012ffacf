"""The views ``instab mitigate`` trains and evaluates on: the images through the two devices (or the user's
real paired photos), and the evaluation images through every protocol's devices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instab._shared.progress import Progress
from instab.studies.mitigate.evaluate import EvaluationSet, protocols
from instab.studies.mitigate.inputs import Inputs
from instab.studies.mitigate.options import MitigateOptions
from instab.studies.mitigate.split import Split
from instab.studies.mitigation.context import TrainingViews
from instab.studies.mitigation.finetune import FineTuner
from instab.studies.mitigation.views import Views, capture

#: The names of the two views when they are the user's own photos (``--pair-images``).
PHOTOS, PAIR_PHOTOS = "photos", "pair-photos"


@dataclass
class AllViews:
    """The training views (fit = train rows, val = validation rows) and the evaluation set."""

    train: TrainingViews
    evaluation: EvaluationSet
    first: str  # name of x's view
    second: str  # name of x''s view
    retention_val: tuple[Views, list[list[int]]] | None = None  # retention images that guard the choice of alpha


def _pair_views(inputs: Inputs, options: MitigateOptions, log: Progress) -> tuple[list[str], list[np.ndarray]]:
    """Every image through the first and second view: the two devices, or the photos and their partners."""
    if inputs.pairs is not None:
        return [PHOTOS, PAIR_PHOTOS], [inputs.data.images, inputs.pairs]
    captured = capture([options.device, options.pair_device], inputs.data.images, options.seed, options.threads, log)
    failed = [i for i, ok in enumerate(np.logical_and(*captured.ok)) if not ok]
    if failed:
        raise ValueError(f"images: {len(failed)} image(s) could not be seen through the devices, e.g. "
                         f"{inputs.data.paths[failed[0]]}")
    return captured.names, captured.images


def build_views(tuner: FineTuner, inputs: Inputs, split: Split, options: MitigateOptions, extra_train: list[str],
                log: Progress) -> AllViews:
    """Capture, then compute the trainable part's inputs (features) of, every view the run needs.

    ``extra_train`` are further environments the training images are seen through (the
    ``devices`` noise scheme pairs views of several devices).
    """
    names, images = _pair_views(inputs, options, log)
    labels = inputs.data.first_labels
    rows = np.concatenate([split.train, split.val])
    train_images = [v[rows] for v in images]
    train_names = list(names)
    if extra_train:
        more = capture(extra_train, inputs.data.images[rows], options.seed + 1, options.threads, log)
        train_images += more.images
        train_names += more.names
    n_fit = len(split.train)
    tv = Views(train_names, train_images, [np.ones(len(rows), bool)] * len(train_images),
               [tuner.features(v) for v in train_images])
    train = TrainingViews(tv, labels[rows], fit=np.arange(n_fit), val=np.arange(n_fit, len(rows)))

    # With real paired photos, the device protocols see the first phone's photos through each device.
    plan = protocols(names[0], names[1])
    others = [t for t in plan["all"] if t not in names]
    ev = inputs.data.images[split.eval]
    captured = capture(others, ev, options.seed + 2, options.threads, log) if others else None
    ev_names = list(names) + (captured.names if captured else [])
    ev_images = [v[split.eval] for v in images] + (captured.images if captured else [])
    ev_ok = [np.ones(len(split.eval), bool)] * len(names) + (captured.ok if captured else [])
    views = Views(ev_names, ev_images, ev_ok, [tuner.features(v) for v in ev_images])
    retention, guard = None, None
    retention_labels: list[list[int]] = []
    if inputs.retention is not None:
        # Half the retention images guard the choice of alpha, the other half measure what was kept.
        ret = inputs.retention
        order = np.random.default_rng([options.seed & 0xFFFFFFFF, 0x4E7]).permutation(len(ret.labels))
        halves = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
        retention_val, retention = (
            Views(["retention"], [ret.images[h]], [np.ones(len(h), bool)], [tuner.features(ret.images[h])])
            for h in halves)
        retention_labels = [ret.labels[i] for i in halves[1]]
        guard = (retention_val, [ret.labels[i] for i in halves[0]])
    evaluation = EvaluationSet(views, [inputs.data.labels[i] for i in split.eval], plan, retention, retention_labels)
    return AllViews(train, evaluation, names[0], names[1], guard)


__all__ = ["PAIR_PHOTOS", "PHOTOS", "AllViews", "build_views"]
