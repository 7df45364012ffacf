""":func:`run_mitigation`: the study as a sequence of steps, each adding rows to one table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from instab._shared.progress import Progress
from instab._shared.provenance import record, utc_now
from instab.environments import devices as device_profiles
from instab.io.store import model_hash
from instab.studies.mitigation.config import DEFAULT_MODEL, MitigationConfig
from instab.studies.mitigation.context import StudyContext
from instab.studies.mitigation.data import load_image_sets
from instab.studies.mitigation.finetune import FineTuner, as_float_model
from instab.studies.mitigation.int8 import add_int8_results
from instab.studies.mitigation.outputs import write_outputs
from instab.studies.mitigation.stability import add_label_free_rows, add_stability_rows
from instab.studies.mitigation.steps import (
    add_fine_tune_row,
    add_raw_pipeline_rows,
    add_top_k_rows,
    capture_evaluation_views,
    capture_training_views,
    start_context,
    training_environments,
)
from instab.studies.mitigation.table import MitigationResult


def _quiet(_line: str) -> None:
    pass


def resolve_devices(devices: Sequence[str] | None, train_device: str | None,
                    second_device: str | None) -> tuple[list[str], str, str]:
    """The evaluation environments (default: every built-in virtual device), x's device and the second device
    (default: the first two of them)."""
    if devices is None:
        devices = [f"device:{n}" for n in device_profiles.builtin_names()]
    devices = list(devices)
    if len(devices) < 2:
        raise ValueError(f"devices: need at least two evaluation environments, got {devices}")
    return devices, train_device or devices[0], second_device or devices[1]


def study_meta(ctx: StudyContext, model: Any, devices: list[str], train_device: str, second_device: str,
               train_errors: list[str], saved: dict[str, str], seconds: float) -> dict[str, Any]:
    """The ``meta`` of the result: what ran, on how many images, the baseline, the knobs, the cost."""
    tuner, train, config = ctx.tuner, ctx.train, ctx.config
    return {
        "model": str(model) if isinstance(model, (str, Path)) else getattr(model, "name", "model"),
        "seed": ctx.seed, "devices": devices, "train_device": train_device, "second_device": second_device,
        "n_train": int(train.n), "n_fit": int(len(train.fit)), "n_val": int(len(train.val)),
        "n_eval": len(ctx.evals.paths),
        "baseline_instability": ctx.baseline["instability"], "baseline_accuracy": ctx.baseline["accuracy"],
        "train_errors": train_errors, "eval_errors": ctx.evals.errors,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "cut": tuner.split.cut if tuner.split else None, "backbone_images": tuner.backbone_images,
        "train_images_per_s": tuner.train_images / tuner.train_seconds if tuner.train_seconds else None,
        "seconds": seconds, "saved_models": saved,
    }


def run_mitigation(
    images: str | Path,
    labels: str | Path,
    eval_images: str | Path,
    eval_labels: str | Path,
    model: Any = DEFAULT_MODEL,
    out: str | Path | None = None,
    seed: int = 0,
    devices: Sequence[str] | None = None,
    train_device: str | None = None,
    second_device: str | None = None,
    config: MitigationConfig | None = None,
    limit: int | None = None,
    eval_limit: int | None = None,
    log: Progress | None = print,
) -> MitigationResult:
    """Run the mitigation study; write ``mitigation.json``, ``.csv`` and ``.html`` to ``out`` when given.

    Parameters
    ----------
    images, labels : str or Path
        Training images (folder) and their labels CSV (``file,class_index``).
    eval_images, eval_labels : str or Path
        Evaluation images, never used in training; overlapping sets (same file or
        same bytes) raise :class:`OverlapError`.
    model : str, Path or instab.models.Model
        Start model; a QDQ model is dequantized.
    out : str or Path, optional
        Folder for the tables and the fine-tuned models.
    seed : int
        Seeds every random choice.
    devices : sequence of str, optional
        Evaluation environments (default: ``device:NAME`` for every built-in virtual
        device); at least three are needed for a meaningful instability.
    train_device : str, optional
        The environment the training images are seen through (x); default the first of ``devices``.
    second_device : str, optional
        The second device's view for the paired schemes; default the second of ``devices``.
    config : MitigationConfig, optional
        The study's knobs.
    limit, eval_limit : int, optional
        Keep the first rows of each labels CSV.
    log : Progress, optional
        Receives progress lines (None: quiet).

    Returns
    -------
    MitigationResult
        Each row: ``method, loss, noise, alpha, accuracy, instability`` (mean top-1 accuracy
        over the evaluation devices and top-1 instability across them; top-k rows use
        top-k), plus ``sigma, accuracy_per_device, relative_reduction`` (vs the baseline's
        instability) and ``int8_accuracy, int8_instability`` where the model was
        re-quantized.
    """
    config = config or MitigationConfig()
    config.check()
    log = log or _quiet
    t_start, started = time.perf_counter(), utc_now()
    devices, train_device, second_device = resolve_devices(devices, train_device, second_device)
    start = as_float_model(model)
    train, evals = load_image_sets(images, labels, eval_images, eval_labels, start.spec, limit, eval_limit)
    log(f"start model {start.name}; {len(train.paths)} training, {len(evals.paths)} evaluation images")
    tuner = FineTuner(start, config, seed)
    envs = training_environments(train_device, second_device, devices, config.schemes)
    train_views = capture_training_views(tuner, train, envs, config, seed, log)
    eval_views = capture_evaluation_views(tuner, evals, devices, config, seed, log)
    ctx = start_context(config, seed, log, tuner, train_views, evals, eval_views)

    add_fine_tune_row(ctx)
    picks = add_stability_rows(ctx)
    add_label_free_rows(ctx, picks)
    add_top_k_rows(ctx)
    add_raw_pipeline_rows(ctx, devices)
    saved = add_int8_results(ctx, picks.best_row, model, out)

    meta = study_meta(ctx, model, devices, train_device, second_device, train.errors, saved,
                      time.perf_counter() - t_start)
    # What was run, on what: the start model's content hash (as the results store keys models).
    meta["provenance"] = record(started, models={start.name: model_hash(start)}, seeds={"seed": seed})
    result = MitigationResult(ctx.table.rows, meta, ctx.search)
    if out is not None:
        write_outputs(result, out)
    log(f"done in {meta['seconds']:.0f} s")
    return result


__all__ = ["resolve_devices", "run_mitigation", "study_meta"]
