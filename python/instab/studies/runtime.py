"""Runtime configurations of the user's models: the same images and weights, different software.

For each model given, :func:`default_configs` lists its reference (ONNX Runtime
with every graph optimization and all cores, or LiteRT's XNNPACK delegate for a
``.tflite``) and the configurations that change one thing:

- **runtime** (same weights, different runtime): ONNX Runtime graph optimization
  levels (extended, basic, disabled), 1 intra-op thread, the CUDA provider when
  available; LiteRT with XNNPACK and with its reference kernels when the model is,
  or comes with (same stem beside it), a ``.tflite`` file;
- **conversion** (different weights or arithmetic): the float32 model (QDQ folded
  away) of an int8 QDQ model, and its float16 conversion.

Several models are also compared with each other (their references). The table
reports instability between runtimes separately from instability between
conversions. ``instab characterize --experiment runtime`` runs :func:`runtime_experiment`.
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
from instab._shared.validation import check_choice, check_threads
from instab.inference.classifier import Classifier
from instab.io.labels import read_labels_csv
from instab.metrics.instability import InstabilityResult, instability
from instab.models.tflite import TFLITE_SUFFIX, litert_interpreter_module
from instab.studies.result import to_plain

#: Row groups: a model's reference, its runtime variants, its conversions, another model's reference.
REFERENCE, RUNTIME, CONVERSION, OTHER_MODEL = "reference", "runtime", "conversion", "other model"
GROUPS = (REFERENCE, RUNTIME, CONVERSION, OTHER_MODEL)
PRECISIONS = ("as-is", "fp32", "fp16")


@dataclass(frozen=True)
class RuntimeConfig:
    """One runtime configuration. ``model`` is a built-in name, a path, a Model or a TFLiteModel.

    ``precision``: ``"as-is"``, ``"fp32"`` (an int8 QDQ model's QDQ folded away; ``dequantize=True``
    means the same) or ``"fp16"`` (that float model, or a float model, converted to float16).
    ``kernels``: LiteRT's ``"xnnpack"`` or ``"reference"`` kernels (``.tflite`` models).
    ``group`` (one of :data:`GROUPS`) and ``label`` (the model's name) arrange the table.
    """

    name: str
    model: Any
    dequantize: bool = False
    provider: str = "cpu"
    threads: int | None = None
    optimization: str = "all"
    decode: str = "full"
    kernels: str = "xnnpack"
    precision: str = "as-is"
    group: str = RUNTIME
    label: str = ""

    def __post_init__(self) -> None:
        check_threads(self.threads)  # a bad value fails here, not after the configurations before it have run
        check_choice(self.precision, PRECISIONS, "precision")
        check_choice(self.group, GROUPS, "group")


@dataclass(frozen=True)
class RuntimeStudy:
    """Predictions of every image under every configuration, and their instability.

    ``classes``/``scores``: [n_images, n_configs, k] (-1 / NaN where an image failed),
    ``top1``/``topk``: :func:`instab.instability` results for k=1 and k=k over all configurations;
    ``groups``/``labels``/``baselines``: each configuration's group, model and the index of the
    configuration it is compared with; ``summaries``: (what, top-1 rate, top-k rate) per group of rows.
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
    groups: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    baselines: list[int] = field(default_factory=list)
    summaries: list[tuple[str, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # configurations left out, and why

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
        """Plain-text table: per model, its configurations by group (each vs its baseline), then the summaries."""
        pw1, agree = self.top1.pairwise(), self.agreement()
        n = self.classes.shape[0]
        base = self.baselines or [0] * len(self.names)
        groups = self.groups or [REFERENCE] + [RUNTIME] * (len(self.names) - 1)
        labels = self.labels or [""] * len(self.names)
        topk = f"top-{self.k}"
        head = (f"  {'group':<11} {'configuration':<44} {'top-1':>6} {topk:>6} {'instab-vs-ref':>13} "
                f"{'agree-vs-ref':>12} {'ms/image':>8}")
        lines = [f"Runtime experiment on {n} images; each row is compared with its model's reference "
                 "(another model's reference: with the first model's)"]
        for i, name in enumerate(self.names):
            if i == 0 or labels[i] != labels[i - 1]:
                lines += [f"model {labels[i]}" if labels[i] else "configurations", head]
            ms = 1000 * self.seconds[i] / max(n, 1) if i < len(self.seconds) else float("nan")
            short = name.split(": ", 1)[-1] if labels[i] else name
            lines.append(f"  {groups[i]:<11} {short:<44} {self.top1.accuracy[i]:6.4f} {self.topk.accuracy[i]:6.4f} "
                         f"{pw1[base[i], i]:13.4f} {agree[base[i], i]:12.4f} {ms:8.2f}")
        lines.append(f"instability (top-1 / top-{self.k}) within each group of rows:")
        lines += [f"  {what}: {r1:.4f} / {rk:.4f}" for what, r1, rk in self.summaries]
        lines.append(f"instability over all {len(self.names)}: top-1 {self.top1.rate:.4f}, top-{self.k} "
                     f"{self.topk.rate:.4f}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_text(self) -> str:
        """The plain-text summary (:meth:`table`)."""
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """Configurations (with group, model, baseline), instability per group and overall, accuracy, seconds."""
        return to_plain({
            "configs": self.names, "groups": self.groups, "models": self.labels, "baselines": self.baselines,
            "instability_top1": self.top1.rate, "instability_topk": self.topk.rate,
            "accuracy": self.top1.accuracy, "k": self.k, "accuracy_topk": self.topk.accuracy,
            "seconds": list(self.seconds),
            "summaries": [{"rows": what, "instability_top1": r1, "instability_topk": rk}
                          for what, r1, rk in self.summaries],
            "notes": self.notes,
        })


#: The models of the runtime experiment by default: an int8 build and another vendor's build of it.
DEFAULT_INT8_MODEL, DEFAULT_OTHER_BUILD = "mobilenet-v2-int8-st", "mobilenet-v2-coral"


def _is_tflite(model: Any) -> bool:
    return isinstance(model, _models.TFLiteModel) or (
        isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(TFLITE_SUFFIX))


def _litert_available() -> bool:
    try:
        litert_interpreter_module()
    except ImportError:
        return False
    return True


def _litert_configs(model: Any, label: str, as_reference: bool, suffix: str = "") -> list[RuntimeConfig]:
    first = REFERENCE if as_reference else RUNTIME
    return [RuntimeConfig(f"{label}: LiteRT XNNPACK{suffix}", model, group=first, label=label),
            RuntimeConfig(f"{label}: LiteRT XNNPACK, 1 thread{suffix}", model, threads=1, label=label),
            RuntimeConfig(f"{label}: LiteRT reference kernels{suffix}", model, kernels="reference", label=label)]


def _onnx_configs(model: Any, label: str, cuda: bool, as_reference: bool, suffix: str = "") -> list[RuntimeConfig]:
    first = REFERENCE if as_reference else RUNTIME
    out = [RuntimeConfig(f"{label}: ORT all optimizations{suffix}", model, group=first, label=label)]
    out += [RuntimeConfig(f"{label}: ORT optimization {level}{suffix}", model, optimization=level, label=label)
            for level in ("extended", "basic", "disable")]
    out.append(RuntimeConfig(f"{label}: ORT 1 thread{suffix}", model, threads=1, label=label))
    if cuda:
        out.append(RuntimeConfig(f"{label}: ORT CUDA provider{suffix}", model, provider="cuda", label=label))
    loaded = model if isinstance(model, _models.Model) else _models.load(model)
    qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in loaded.proto.graph.node)
    if qdq:
        out.append(RuntimeConfig(f"{label}: fp32 (QDQ folded){suffix}", model, precision="fp32",
                                 group=CONVERSION, label=label))
    out.append(RuntimeConfig(f"{label}: fp16{' (of the fp32)' if qdq else ''}{suffix}", model, precision="fp16",
                             group=CONVERSION, label=label))
    return out


def _label(model: Any) -> str:
    if isinstance(model, (_models.Model, _models.TFLiteModel)):
        return model.name
    text = os.fspath(model)
    return text if text in _models.builtin_names() else os.path.basename(text)


def model_configs(model: Any, cuda: bool = False, notes: list[str] | None = None) -> list[RuntimeConfig]:
    """The configurations of one model: its reference first, then runtime variants, then conversions.

    A ``.tflite`` model (or one beside an ONNX model, same stem) adds LiteRT rows; without
    ai-edge-litert a companion ``.tflite`` is left out with a line in ``notes``.
    """
    label = _label(model)
    is_path = isinstance(model, (str, os.PathLike))
    if _is_tflite(model):
        litert_interpreter_module()  # a .tflite without LiteRT: "install instab[litert]", before any work
        configs = _litert_configs(model, label, True)
        onnx_twin = _models.companion(model, ".onnx") if is_path else None
        if onnx_twin is not None:
            configs += _onnx_configs(str(onnx_twin), label, cuda, False, " (.onnx)")[:1]
        return configs
    configs = _onnx_configs(model, label, cuda, True)
    twin = _models.companion(model, TFLITE_SUFFIX) if is_path else None
    if twin is not None and _litert_available():
        at = next(i for i, c in enumerate(configs) if c.group == CONVERSION)  # after the ORT runtime rows
        configs[at:at] = _litert_configs(str(twin), label, False, " (.tflite)")[::2]
    elif twin is not None and notes is not None:
        notes.append(f"{label}: LiteRT rows for {twin.name} left out: install instab[litert]")
    return configs


def default_configs(models: Sequence[Any] | None = None, cuda: bool | None = None,
                    notes: list[str] | None = None) -> list[RuntimeConfig]:
    """The configurations of the runtime experiment for ``models`` (default: the shared int8 and Coral builds).

    Each model contributes :func:`model_configs`; the reference of every model after the
    first is compared with the first model's (group ``"other model"``). The CUDA
    configurations are included when ``cuda`` is True, or when None and ONNX Runtime has
    the CUDA provider.
    """
    models = list(models) if models else [DEFAULT_INT8_MODEL, DEFAULT_OTHER_BUILD]
    if cuda is None:
        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    configs: list[RuntimeConfig] = []
    for i, m in enumerate(models):
        mine = model_configs(m, cuda, notes)
        if i:
            mine[0] = dataclasses.replace(mine[0], group=OTHER_MODEL)
        configs += mine
    return configs


def _classifier(cfg: RuntimeConfig, loaded: dict[tuple[Any, str], Any], batch_size: int) -> Classifier:
    precision = "fp32" if cfg.dequantize and cfg.precision == "as-is" else cfg.precision
    key = (cfg.model if not isinstance(cfg.model, (_models.Model, _models.TFLiteModel)) else id(cfg.model),
           precision)
    if key not in loaded:
        m = cfg.model if isinstance(cfg.model, (_models.Model, _models.TFLiteModel)) else _models.load(cfg.model)
        if precision != "as-is":
            if not isinstance(m, _models.Model):
                raise ValueError(f"precision: {precision!r} needs an ONNX model, got {type(m).__name__} ({cfg.name})")
            if any(n.op_type == "DequantizeLinear" for n in m.proto.graph.node):
                m = _models.dequantize(m)
            if precision == "fp16":
                m = _models.to_fp16(m)
        loaded[key] = m
    return Classifier(loaded[key], provider=cfg.provider, threads=cfg.threads, optimization=cfg.optimization,
                      decode=cfg.decode, batch_size=batch_size, kernels=cfg.kernels)


def _baselines(configs: Sequence[RuntimeConfig]) -> list[int]:
    """Each configuration's reference: its model's first row (a later model's first row: the first model's)."""
    out, current = [], 0
    for i, cfg in enumerate(configs):
        if cfg.group in (REFERENCE, OTHER_MODEL):
            current = i
            out.append(0)
        else:
            out.append(current)
    return out


def _summaries(configs: Sequence[RuntimeConfig], base: list[int], cls: np.ndarray, sc: np.ndarray, labels: Any,
               k: int) -> list[tuple[str, float, float]]:
    def rates(idx: list[int]) -> tuple[float, float]:
        sub_c, sub_s = cls[:, idx], sc[:, idx]
        return (instability(sub_c, labels, k=1, n_classes=1000, top_scores=sub_s).rate,
                instability(sub_c, labels, k=k, n_classes=1000, top_scores=sub_s).rate)

    out = []
    for ref in sorted(set(base) | {0}):
        label = configs[ref].label or configs[ref].name
        for group in (RUNTIME, CONVERSION):
            rows = [i for i, b in enumerate(base) if b == ref and configs[i].group == group and i != ref]
            if rows:
                what = f"{label}: reference + {len(rows)} {group} configuration{'s' if len(rows) > 1 else ''}"
                out.append((what, *rates([ref, *rows])))
    refs = [i for i, c in enumerate(configs) if c.group in (REFERENCE, OTHER_MODEL)]
    if len(refs) > 1:
        out.append((f"between models ({len(refs)} references)", *rates(refs)))
    return out


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
    notes: list[str] = []
    configs = list(configs) if configs is not None else default_configs(notes=notes)
    if len(configs) < 2:
        raise ValueError(f"configs: need at least two configurations to compare, got {len(configs)}")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"configs: names must be unique, got {names}")
    items = list(images)
    loaded: dict[tuple[Any, str], Any] = {}
    classes, scores, errors, seconds = [], [], [], []
    for n_done, cfg in enumerate(configs, 1):
        clf = _classifier(cfg, loaded, batch_size)
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
    base = _baselines(configs)
    return RuntimeStudy(names, cls, sc, errors, top1, topk, k, seconds, groups=[c.group for c in configs],
                        labels=[c.label for c in configs], baselines=base,
                        summaries=_summaries(configs, base, cls, sc, labels, k), notes=notes)


def runtime_models(models: Sequence[Any] | None = None) -> list[str]:
    """The model files the experiment uses for ``models`` (default pair when None), companions included."""
    names = [os.fspath(m) for m in (models or [DEFAULT_INT8_MODEL, DEFAULT_OTHER_BUILD])]
    twins = [_models.companion(m, s) for m in names for s in (".onnx", TFLITE_SUFFIX)]
    return list(dict.fromkeys(names + [str(t) for t in twins if t is not None]))


def runtime_experiment(
    images_dir: str | os.PathLike, labels_csv: str | os.PathLike, models: Sequence[Any] | None = None, *,
    limit: int | None = None, progress: Progress | None = None,
) -> RuntimeStudy:
    """:func:`compare_runtimes` with :func:`default_configs` of ``models`` on a labelled folder.

    ``models``: model names or paths (ONNX or ``.tflite``); None for the shared int8 and Coral builds.
    The configurations (and so a missing model or a ``.tflite`` without LiteRT) are checked before
    any image is read.
    """
    notes: list[str] = []
    configs = default_configs(models, notes=notes)
    items, errors = read_labels_csv(labels_csv, images_dir, limit)
    if not items:
        raise ValueError(f"runtime: no usable images in {labels_csv} ({'; '.join(errors[:3])})")
    study = compare_runtimes([str(it.path) for it in items], [it.labels for it in items], configs,
                             progress=progress)
    return dataclasses.replace(study, input_errors=list(errors), notes=notes)


__all__ = [
    "CONVERSION",
    "DEFAULT_INT8_MODEL",
    "DEFAULT_OTHER_BUILD",
    "GROUPS",
    "OTHER_MODEL",
    "PRECISIONS",
    "REFERENCE",
    "RUNTIME",
    "RuntimeConfig",
    "RuntimeStudy",
    "compare_runtimes",
    "default_configs",
    "model_configs",
    "runtime_experiment",
    "runtime_models",
]
