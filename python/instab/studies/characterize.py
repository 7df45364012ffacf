"""``instab characterize``: one of the source study's experiments on a folder of labelled images.

Each experiment returns printable text and a JSON-able dict; the command writes
``<experiment>.txt`` and ``<experiment>.json`` into the output folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instab.environments import devices
from instab.studies import environment as experiments

DEFAULT_MODEL = "efficientnet-lite0"


def _tables(tables: Any) -> tuple[str, Any]:
    tables = tables if isinstance(tables, list) else [tables]
    return "\n\n".join(t.to_text() for t in tables), [t.to_dict() for t in tables]


def run_env_experiment(name: str, images: str, labels: str, models: Sequence[str], *, limit: int | None,
                       seed: int, threads: int | None) -> tuple[str, Any]:
    """The experiments that are a list of environments, one table per model."""
    kwargs = {"limit": limit, "seed": seed, "threads": threads}
    if name == "compression-quality":
        return _tables(experiments.compression_quality(images, labels, list(models), **kwargs))
    if name == "compression-format":
        return _tables(experiments.compression_format(images, labels, list(models), **kwargs))
    if name == "noise":
        text1, data1 = _tables(experiments.noise_sweep(images, labels, list(models), **kwargs))
        text2, data2 = _tables(experiments.phone_sweep(images, labels, list(models), **kwargs))
        return text1 + "\n\n" + text2, data1 + data2
    if name in ("devices", "top-k"):
        envs = [f"device:{d}" for d in devices.names()]
        return _tables(experiments.run_environments(images, labels, list(models), envs, name=name, **kwargs))
    raise ValueError(f"experiment: unknown {name!r}")


def run_isp(images: str, labels: str, model: str, *, limit: int | None, seed: int, threads: int | None
            ) -> tuple[str, Any]:
    from instab import Classifier, models as _models
    from instab._shared.decode import decode
    from instab.io.manifest import read_labels_csv
    from instab.studies.isp import isp_table, raw_mitigation

    items, _ = read_labels_csv(labels, images, limit)
    pixels = [decode(str(it.path)) for it in items]
    label_sets = [it.labels for it in items]
    clf = Classifier(_models.load(model), threads=threads)
    table = isp_table(pixels, label_sets, clf, seed=seed)
    mitigation = raw_mitigation(pixels, label_sets, clf, seed=seed)
    text = table.markdown() + "\n\nRaw mitigation:\n" + mitigation.markdown()
    return text, {"isp": _plain(table), "raw_mitigation": _plain(mitigation)}


def run_runtime(images: str, labels: str, *, limit: int | None) -> tuple[str, Any]:
    from instab.io.manifest import read_labels_csv
    from instab.studies.runtime import compare_runtimes

    items, _ = read_labels_csv(labels, images, limit)
    study = compare_runtimes([str(it.path) for it in items], [it.labels for it in items])
    return study.table(), {"configs": study.names, "instability_top1": study.top1.rate,
                           "instability_topk": study.topk.rate, "accuracy": study.top1.accuracy.tolist()}


def _plain(obj: Any) -> Any:
    if is_dataclass(obj):
        return {k: _plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


EXPERIMENT_NAMES = ["compression-quality", "compression-format", "isp", "noise", "runtime", "devices", "top-k",
                    "mitigation"]


def run(name: str, images: str, labels: str, models: Sequence[str], out: str | Path | None, *,
        limit: int | None = None, seed: int = 0, threads: int | None = None,
        printer: Callable[[str], None] = print) -> dict[str, Any]:
    if name in ("isp",):
        text, data = run_isp(images, labels, models[0], limit=limit, seed=seed, threads=threads)
    elif name == "runtime":
        text, data = run_runtime(images, labels, limit=limit)
    else:
        text, data = run_env_experiment(name, images, labels, models, limit=limit, seed=seed, threads=threads)
    printer(text)
    if out is not None:
        import json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.txt").write_text(text + "\n")
        (out / f"{name}.json").write_text(json.dumps(_plain(data), indent=1))
    return {"text": text, "data": data}

__all__ = [
    "DEFAULT_MODEL",
    "EXPERIMENT_NAMES",
    "run",
    "run_env_experiment",
    "run_isp",
    "run_runtime",
]
