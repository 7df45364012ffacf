""":func:`run_mitigate`: a model in, a stabler model out, with the measurements that show it."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from instab import models
from instab._shared.progress import Progress
from instab._shared.provenance import record, utc_now
from instab.io.store import model_hash
from instab.studies.mitigate.evaluate import evaluate
from instab.studies.mitigate.inputs import load_inputs, untrainable_operators
from instab.studies.mitigate.options import MitigateOptions
from instab.studies.mitigate.quantized import quantize_and_evaluate
from instab.studies.mitigate.result import MitigateResult
from instab.studies.mitigate.split import split_per_class
from instab.studies.mitigate.tuning import Pairs, choose_alpha, fit_plain, fit_stable, soft_targets
from instab.studies.mitigate.views import AllViews, build_views
from instab.studies.mitigation.config import MitigationConfig
from instab.studies.mitigation.data import check_disjoint
from instab.studies.mitigation.finetune import FineTuner, as_float_model
from instab.studies.mitigation.measuring import measure
from instab.studies.mitigation.noise import make_scheme
from instab.studies.mitigation.stability import noisy_features
from instab.train.autodiff import UnsupportedOperatorError

#: How many draws of a random x' the training cycles through (epoch e uses draw e mod DRAWS).
DRAWS = 3


def _quiet(_line: str) -> None:
    pass


def _tuner(start: models.Model, options: MitigateOptions) -> FineTuner:
    """The fine-tuner, after checking that the graph can be differentiated (every unsupported operator named)."""
    config = MitigationConfig(trainable=options.trainable, epochs=options.epochs, batch_size=options.batch_size,
                              lr=options.lr, optimizer=options.optimizer, threads=options.threads)
    try:
        tuner = FineTuner(start, config, options.seed)
        tuner.trainer("ce", 0.0, soft=True)
    except UnsupportedOperatorError:
        bad = untrainable_operators(tuner.head0 if "tuner" in locals() else start.proto)
        raise ValueError(f"model: instab cannot train {start.name}: no gradient rule for operator(s) "
                         f"{', '.join(bad) or 'in its graph'}") from None
    return tuner


def _pairs(tuner: FineTuner, views: AllViews, options: MitigateOptions, rows: np.ndarray) -> Pairs:
    """x, x' per draw and the soft targets of training rows ``rows``."""
    t = views.train
    targets = soft_targets(tuner, t.x, t.labels, options.distill)
    if options.noise.split(":")[0] == "none":
        return Pairs(t.x, [], targets).rows(rows)
    scheme = make_scheme(options.noise, second=t.second_images, labels=t.labels, pool_seed=options.seed,
                         views=t.views.images)
    xs, noisy = noisy_features(scheme, t, tuner, DRAWS, options.seed)
    return Pairs(xs if xs is not None else t.x, noisy, targets).rows(rows)


def _validation_score(tuner: FineTuner, views: AllViews):
    """score(head): instability between the two views and mean accuracy on the validation rows."""
    t = views.train

    def score(head: Any) -> dict[str, Any]:
        ranked = tuner.predict(head, t.views, t.val)[:, :2]
        m = measure(ranked, t.val_labels, 1)
        retention = None
        if views.retention_val is not None:
            guard, labels = views.retention_val
            retention = measure(tuner.predict(head, guard), labels, 1)["accuracy"]
        return {"instability": m["instability"], "accuracy": m["accuracy"], "retention": retention}

    return score


def _extra_training_views(options: MitigateOptions) -> list[str]:
    # The devices scheme pairs photos of every built-in device (never the held-out ones).
    if options.noise.split(":")[0] != "devices":
        return []
    from instab.studies.mitigate.evaluate import protocols  # noqa: PLC0415 -- same package, kept next to its use

    return [t for t in protocols(options.device, options.pair_device)["built_in"]
            if t not in (options.device, options.pair_device)]


def run_mitigate(model: Any, images: str | Path, labels: str | Path, options: MitigateOptions | None = None,
                 pair_images: str | Path | None = None, retain_images: str | Path | None = None,
                 retain_labels: str | Path | None = None, limit: int | None = None,
                 log: Progress | None = print) -> MitigateResult:
    """Fine-tune ``model`` to answer alike across devices; measure it against the input and a plain fine-tune.

    Parameters
    ----------
    model : str, Path or instab.models.Model
        The start model (a QDQ int8 model is dequantized first).
    images, labels : str or Path
        Labelled images (``file,class_index``); split per class into training,
        validation (alpha) and evaluation images by ``options.seed``.
    options : MitigateOptions, optional
        Devices, loss, noise, alpha, schedule (see :class:`MitigateOptions`).
    pair_images : str or Path, optional
        Real photos of the same scenes by a second phone, same file names as ``images``:
        x' is the partner photo instead of a virtual device's view.
    retain_images, retain_labels : str or Path, optional
        Images of other classes: top-1 on them before and after measures forgetting.
    limit : int, optional
        Use the first rows of ``labels`` only.
    log : Progress, optional
        Receives progress lines (None: quiet).

    Returns
    -------
    MitigateResult
        ``models`` (``input``, ``plain``, ``stable``: tuned ONNX models), ``rows`` (every
        measure per model and per int8 copy), ``meta`` (what ran, timings, the alpha search).
    """
    options = options or MitigateOptions()
    options.check()
    log = log or _quiet
    t0, started = time.perf_counter(), utc_now()
    start = as_float_model(model)
    tuner = _tuner(start, options)
    inputs = load_inputs(images, labels, start.spec, pair_images, retain_images, retain_labels, limit)
    split = split_per_class(inputs.data.first_labels, options.val_fraction, options.eval_fraction, options.seed)
    paths = inputs.data.paths
    check_disjoint([paths[i] for i in np.concatenate([split.train, split.val])], [paths[i] for i in split.eval])
    log(f"{start.name}: {split.sizes()} images (train / validation / evaluation), "
        f"{len(inputs.retention.labels) if inputs.retention else 0} retention images")
    views = build_views(tuner, inputs, split, options, _extra_training_views(options), log)
    fit_rows = views.train.fit
    pairs = _pairs(tuner, views, options, fit_rows)

    timings: dict[str, float] = {"setup_s": time.perf_counter() - t0}
    search: list[dict[str, Any]] = []
    alpha = options.alpha
    heads: dict[str, Any] = {"input": tuner.head0}
    t1 = time.perf_counter()
    if options.noise.split(":")[0] == "none":
        heads["plain"] = fit_plain(tuner, pairs)
    elif alpha is None:
        alpha, search = choose_alpha(tuner, options.loss, options.alphas[options.loss], pairs,
                                     _validation_score(tuner, views), log, heads, options.max_retention_drop)
    else:
        heads["plain"] = fit_plain(tuner, pairs)
        heads["stable"] = fit_stable(tuner, options.loss, alpha, pairs)
    timings["training_s"] = time.perf_counter() - t1
    log(f"trained in {timings['training_s']:.0f} s (alpha {alpha})")

    rows = {name: evaluate(tuner, head, views.evaluation) for name, head in heads.items()}
    tuned = {name: models.Model(tuner.full_model(h), start.spec, f"{start.name}-{name}")
             for name, h in heads.items() if name != "input"}
    int8: dict[str, Any] = {}
    if options.int8:
        # Calibrated on both devices' views: activations of either device fit the int8 ranges.
        per_view = max(1, options.calibration // 2)
        calibration = np.concatenate([v[fit_rows][:per_view] for v in views.train.views.images[:2]])
        # The plain model's int8 copy is left out: the int8 question is whether the stable model keeps its gain.
        best = "stable" if "stable" in tuned else "plain"
        int8 = quantize_and_evaluate(tuner, {"input": start, best: tuned[best]}, calibration, views.evaluation, log)
    timings["seconds"] = time.perf_counter() - t0
    meta = {
        "model": getattr(start, "name", str(model)), "options": asdict(options), "views": [views.first, views.second],
        "split": split.sizes(), "n_retention": len(views.evaluation.retention_labels),
        "n_retention_guard": len(views.retention_val[1]) if views.retention_val else 0,
        "alpha": alpha, "alpha_search": search, "timings": timings, "errors": inputs.data.errors,
        "provenance": record(started, models={start.name: model_hash(start)}, seeds={"seed": options.seed}),
    }
    return MitigateResult(tuned, {k: v[0] for k, v in int8.items()}, rows, {k: v[1] for k, v in int8.items()}, meta)


__all__ = ["run_mitigate"]
