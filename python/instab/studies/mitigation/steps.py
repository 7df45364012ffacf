"""The study's steps outside the scheme search: the views, the baseline, plain fine-tuning, top-k, the raw pipeline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from instab._shared.progress import Progress
from instab.studies.mitigation.config import MitigationConfig
from instab.studies.mitigation.context import StudyContext, TrainingViews
from instab.studies.mitigation.finetune import FineTuner
from instab.studies.mitigation.measuring import measure
from instab.studies.mitigation.table import Table
from instab.studies.mitigation.views import Views, capture, capture_raw, device_names
from instab.train.dataset import LabeledSet


def training_environments(train_device: str, second_device: str, devices: Sequence[str],
                          schemes: Sequence[str]) -> list[str]:
    """x's environment, the second device's, and every other evaluation device when the devices scheme runs."""
    envs = [train_device, second_device]
    # The devices scheme pairs photos from every evaluation device: capture the training images through all.
    if any(t.split(":")[0] == "devices" for t in schemes):
        envs += [d for d in devices if d not in envs]
    return envs


def capture_training_views(tuner: FineTuner, train: LabeledSet, envs: Sequence[str], config: MitigationConfig,
                           seed: int, log: Progress) -> TrainingViews:
    """The training images through ``envs`` (an image any of them failed on is dropped), their features, and
    the seeded validation split (``config.val_fraction`` of the images)."""
    captured = capture(envs, train.images, seed, config.threads, log)
    keep = np.logical_and.reduce(captured.ok)
    images = [v[keep] for v in captured.images]
    n = len(images[0])
    features = [tuner.features(v) for v in images]
    order = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xA1]).permutation(n)
    n_val = int(round(config.val_fraction * n))
    views = Views(list(envs), images, [np.ones(n, bool)] * len(images), features)
    return TrainingViews(views, train.first_labels[keep], fit=np.sort(order[n_val:]), val=np.sort(order[:n_val]))


def capture_evaluation_views(tuner: FineTuner, evals: LabeledSet, devices: Sequence[str], config: MitigationConfig,
                             seed: int, log: Progress) -> Views:
    """The evaluation images through every evaluation environment, with their features."""
    views = capture(devices, evals.images, seed, config.threads, log)
    views.features = [tuner.features(im) for im in views.images]
    log(f"  backbone features ready ({tuner.backbone_images} images)" if tuner.backbone else
        "  whole network trains: the views go to the training graph as images")
    return views


def start_context(config: MitigationConfig, seed: int, log: Progress, tuner: FineTuner, train: TrainingViews,
                  evals: LabeledSet, views: Views) -> StudyContext:
    """The study's context with its first row: the start model (``baseline``) on the evaluation views."""
    ranked = tuner.predict(tuner.head0, views)
    base = measure(ranked, evals.labels, 1)
    table = Table(base["instability"], log)
    table.add("baseline", None, None, None, base, head=tuner.head0)
    return StudyContext(config, seed, log, tuner, train, evals, views, base, ranked, table)


def add_fine_tune_row(ctx: StudyContext) -> None:
    """Plain fine-tuning: cross-entropy on every training image, no x'."""
    t = ctx.train
    head = ctx.tuner.fit("ce", 0.0, t.x, t.labels, None)
    ctx.table.add("fine-tune", "ce", "none", 0.0, ctx.measure(head), head=head)


def add_top_k_rows(ctx: StudyContext) -> None:
    """The baseline and the most stable fine-tuned model, counted correct when a label is in the top k."""
    k, table = ctx.config.top_k, ctx.table
    table.add(f"top-{k}", None, None, None, measure(ctx.baseline_ranked, ctx.evals.labels, k), head=None, k=k)
    best = table.most_stable()
    if best is not None:
        b = table.rows[best]
        table.add(f"top-{k} + stability", b["loss"], b["noise"], b["alpha"], ctx.measure(table.models[best], k=k),
                  sigma=b["sigma"], k=k)


def add_raw_pipeline_rows(ctx: StudyContext, devices: Sequence[str]) -> None:
    """The consistent raw pipeline: every device's raw capture developed by one ISP, no codec (start model, and
    the most stable fine-tuned one); only when every evaluation environment is a plain ``device:NAME``."""
    if not ctx.config.raw:
        return
    names = device_names(devices)
    if names is None:
        ctx.log("  raw pipeline skipped: the evaluation environments are not all device:NAME")
        return
    raw = capture_raw(names, ctx.evals.images, ctx.seed, ctx.config.threads, ctx.log)
    raw.features = [ctx.tuner.features(im) for im in raw.images]
    table = ctx.table
    table.add("raw pipeline", None, None, None, ctx.measure(ctx.tuner.head0, raw))
    best = table.most_stable()
    if best is not None:
        b = table.rows[best]
        table.add("raw pipeline + stability", b["loss"], b["noise"], b["alpha"], ctx.measure(table.models[best], raw),
                  sigma=b["sigma"])


__all__ = [
    "add_fine_tune_row",
    "add_raw_pipeline_rows",
    "add_top_k_rows",
    "capture_evaluation_views",
    "capture_training_views",
    "start_context",
    "training_environments",
]
