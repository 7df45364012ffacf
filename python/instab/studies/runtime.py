"""Runtime environments: score the same images under several runtime configurations
(model build, int8 vs dequantized float, provider, threads, graph optimization,
JPEG decoding) and measure the instability between them.

This is the processor/OS experiment of the source study: the pixels are the same
files everywhere, only the software that turns them into a prediction changes.
``instab characterize --experiment runtime`` runs :func:`runtime_experiment`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from instab import models as _models
from instab._shared.progress import Progress, report
from instab._shared.validation import check_threads
from instab.inference.classifier import Classifier
from instab.io.labels import read_labels_csv
from instab.metrics.instability import InstabilityResult, instability
from instab.studies.result import to_plain


@dataclass(frozen=True)
class RuntimeConfig:
    """One runtime configuration. ``model`` is a built-in name, a path or a Model."""

    name: str
    model: Any
    dequantize: bool = False
    provider: str = "cpu"
    threads: int | None = None
    optimization: str = "all"
    decode: str = "full"

    def __post_init__(self) -> None:
        check_threads(self.threads)  # a bad value fails here, not after the configurations before it have run


@dataclass(frozen=True)
class RuntimeStudy:
    """Predictions of every image under every configuration, and their instability.

    ``classes``/``scores``: [n_images, n_configs, k] (-1 / NaN where an image failed),
    ``top1``/``topk``: :func:`instab.instability` results for k=1 and k=k.
    """

    names: list[str]
    classes: np.ndarray
    scores: np.ndarray
    errors: list[list[str | None]]
    top1: InstabilityResult
    topk: InstabilityResult
    k: int
    seconds: list[float] = field(default_factory=list)
    input_errors: list[str] = field(default_factory=list)  # label rows left out (image errors: ``errors``)

    def agreement(self) -> np.ndarray:
        """[e, e] fraction of images whose top-1 class is the same under both configurations."""
        c = self.classes[:, :, 0]
        ok = c >= 0
        e = c.shape[1]
        out = np.full((e, e), np.nan)
        for a in range(e):
            for b in range(e):
                both = ok[:, a] & ok[:, b]
                if both.any():
                    out[a, b] = float((c[both, a] == c[both, b]).mean())
        return out

    def table(self) -> str:
        """Plain-text summary: per-configuration accuracy, instability vs the first configuration."""
        pw1 = self.top1.pairwise()
        agree = self.agreement()
        topk = f"top-{self.k}"
        lines = [f"{'configuration':<34} {'top-1':>6} {topk:>6} {'instab-vs-ref':>13} {'agree-vs-ref':>12}"]
        for i, name in enumerate(self.names):
            lines.append(
                f"{name:<34} {self.top1.accuracy[i]:6.4f} {self.topk.accuracy[i]:6.4f} "
                f"{pw1[0, i]:13.4f} {agree[0, i]:12.4f}"
            )
        lines.append(
            f"instability over all {len(self.names)}: top-1 {self.top1.rate:.4f}, top-{self.k} {self.topk.rate:.4f}"
        )
        return "\n".join(lines)

    def to_text(self) -> str:
        """The plain-text summary (:meth:`table`)."""
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """Configurations, instability, accuracy per configuration, seconds spent scoring each."""
        return to_plain({
            "configs": self.names, "instability_top1": self.top1.rate, "instability_topk": self.topk.rate,
            "accuracy": self.top1.accuracy, "k": self.k, "accuracy_topk": self.topk.accuracy,
            "seconds": list(self.seconds),
        })


#: The models of the runtime experiment by default: an int8 build and another vendor's build of it.
DEFAULT_INT8_MODEL, DEFAULT_OTHER_BUILD = "mobilenet-v2-int8-st", "mobilenet-v2-coral"


def default_configs(
    int8_model: Any = DEFAULT_INT8_MODEL, other_build: Any = DEFAULT_OTHER_BUILD, cuda: bool | None = None
) -> list[RuntimeConfig]:
    """The configurations of the runtime experiment.

    The first is the reference (the int8 build on the CPU with all threads, full
    graph optimization and full JPEG decoding); each other one changes one thing. The CUDA
    configuration is included when ``cuda`` is True, or when None and ONNX
    Runtime has the CUDA provider.
    """
    if cuda is None:
        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    configs = [
        RuntimeConfig("int8 (reference)", int8_model),
        RuntimeConfig("dequantized float", int8_model, dequantize=True),
        RuntimeConfig("other vendor build", other_build),
        RuntimeConfig("1 thread", int8_model, threads=1),
        RuntimeConfig("optimization disabled", int8_model, optimization="disable"),
        RuntimeConfig("optimization basic", int8_model, optimization="basic"),
        RuntimeConfig("JPEG draft (DCT-scaled) decode", int8_model, decode="draft"),
    ]
    if cuda:
        configs.append(RuntimeConfig("CUDA provider", int8_model, provider="cuda"))
    return configs


def compare_runtimes(
    images: Sequence[Any],
    labels: Any,
    configs: Sequence[RuntimeConfig] | None = None,
    *,
    k: int = 5,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> RuntimeStudy:
    """Score ``images`` (paths, bytes or arrays) under each configuration and measure instability.

    Args:
        images: the items to classify, the same for every configuration.
        labels: label sets for :func:`instab.instability` (int [n], or a list of sets).
        configs: the configurations (default: :func:`default_configs`).
        k: top-k kept per image; instability is reported for k=1 and k=k.
        batch_size: inference batch size.
        progress: receives a ``"runtime N/M"`` count of configurations after each one (None: quiet).
    """
    configs = list(configs) if configs is not None else default_configs()
    if len(configs) < 2:
        raise ValueError(f"configs: need at least two configurations to compare, got {len(configs)}")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"configs: names must be unique, got {names}")
    items = list(images)
    loaded: dict[tuple[Any, bool], _models.Model] = {}
    classes, scores, errors, seconds = [], [], [], []
    for n_done, cfg in enumerate(configs, 1):
        key = (cfg.model if not isinstance(cfg.model, _models.Model) else id(cfg.model), cfg.dequantize)
        if key not in loaded:
            m = cfg.model if isinstance(cfg.model, _models.Model) else _models.load(cfg.model)
            loaded[key] = _models.dequantize(m) if cfg.dequantize else m
        clf = Classifier(
            loaded[key],
            provider=cfg.provider,
            threads=cfg.threads,
            optimization=cfg.optimization,
            decode=cfg.decode,
            batch_size=batch_size,
        )
        t0 = time.perf_counter()
        pred = clf.predict(items, k=k)
        seconds.append(time.perf_counter() - t0)
        classes.append(pred.classes)
        scores.append(pred.scores)
        errors.append(pred.errors)
        report(progress, "runtime", n_done, len(configs), "configurations")
    cls = np.stack(classes, axis=1)
    sc = np.stack(scores, axis=1)
    top1 = instability(cls, labels, k=1, n_classes=1000, top_scores=sc)
    topk = instability(cls, labels, k=k, n_classes=1000, top_scores=sc)
    return RuntimeStudy(names, cls, sc, errors, top1, topk, k, seconds)


def runtime_experiment(
    images_dir: str | os.PathLike, labels_csv: str | os.PathLike, models: Sequence[Any] | None = None, *,
    limit: int | None = None, progress: Progress | None = None,
) -> RuntimeStudy:
    """:func:`compare_runtimes` with :func:`default_configs` on a labelled folder.

    ``models``: None for the default builds, else the reference int8 model and,
    optionally, another vendor's build of it (``default_configs(*models)``).
    """
    if models is not None and not 1 <= len(models) <= 2:
        raise ValueError(f"runtime: give the int8 model and at most one other build, got {len(models)} models")
    items, errors = read_labels_csv(labels_csv, images_dir, limit)
    if not items:
        raise ValueError(f"runtime: no usable images in {labels_csv} ({'; '.join(errors[:3])})")
    configs = default_configs(*models) if models else default_configs()
    study = compare_runtimes([str(it.path) for it in items], [it.labels for it in items], configs,
                             progress=progress)
    return dataclasses.replace(study, input_errors=list(errors))


__all__ = [
    "DEFAULT_INT8_MODEL",
    "DEFAULT_OTHER_BUILD",
    "RuntimeConfig",
    "RuntimeStudy",
    "compare_runtimes",
    "default_configs",
    "runtime_experiment",
]
