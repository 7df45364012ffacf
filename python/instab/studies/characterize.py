"""``instab characterize``: one of the source study's experiments on a folder of labelled images.

:func:`run_experiment` dispatches by name and returns a
:class:`~instab.studies.result.StudyResult`; the command prints its ``to_text()``
and writes ``<experiment>.txt`` and ``<experiment>.json`` (its ``to_dict()``).
The ``mitigation`` experiment has its own options and runs through
``instab.cli.mitigation``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from instab._shared.progress import Progress
from instab._shared.validation import check_threads
from instab.environments import devices
from instab.io.labels import read_labels_csv
from instab.studies import environment as experiments
from instab.studies.decode import decode_experiment
from instab.studies.environment import ExperimentTable, ExperimentTables
from instab.studies.isp import isp_experiment, psnr_experiment
from instab.studies.result import StudyResult
from instab.studies.runtime import RuntimeStudy, runtime_experiment, runtime_models

DEFAULT_MODEL = "efficientnet-lite0"

#: The experiments of ``instab characterize --experiment`` (``mitigation`` runs through its own module).
EXPERIMENT_NAMES = ["compression-quality", "compression-format", "isp", "isp-psnr", "noise", "runtime", "devices",
                    "top-k", "decode", "mitigation"]


def _as_tables(name: str, result: ExperimentTable | ExperimentTables) -> ExperimentTables:
    return result if isinstance(result, ExperimentTables) else ExperimentTables(name, [result])


def run_env_experiment(name: str, images: str | os.PathLike, labels: str | os.PathLike, models: Sequence[str], *,
                       limit: int | None = None, seed: int = 0, threads: int | None = None,
                       progress: Progress | None = None) -> ExperimentTables:
    """The experiments that are a list of environments, one table per model (and per sweep for ``noise``)."""
    check_threads(threads)
    kwargs: dict[str, Any] = {"limit": limit, "seed": seed, "threads": threads, "progress": progress}
    models = list(models)
    if name == "compression-quality":
        return _as_tables(name, experiments.compression_quality(images, labels, models, **kwargs))
    if name == "compression-format":
        return _as_tables(name, experiments.compression_format(images, labels, models, **kwargs))
    if name == "noise":
        noise = _as_tables(name, experiments.noise_sweep(images, labels, models, **kwargs))
        phone = _as_tables(name, experiments.phone_sweep(images, labels, models, **kwargs))
        return ExperimentTables(name, noise.tables + phone.tables)
    if name in ("devices", "top-k"):
        envs = [f"device:{d}" for d in devices.names()]
        return _as_tables(name, experiments.run_environments(images, labels, models, envs, name=name, **kwargs))
    raise ValueError(f"experiment: unknown {name!r}")


def experiment_models(name: str, models: Sequence[str] | None = None) -> list[str]:
    """The models experiment ``name`` uses, given the ``--model`` options (for its provenance)."""
    if name == "isp-psnr":
        return []
    if name == "runtime":
        return runtime_models(models)
    models = list(models) if models else [DEFAULT_MODEL]
    return models[:1] if name in ("isp", "decode") else models


def input_errors(result: StudyResult) -> list[str]:
    """What an experiment left out or failed on: label rows, unreadable images, failed items (no repeats)."""
    if isinstance(result, ExperimentTables):
        messages = [e for table in result for e in table.errors]
    elif isinstance(result, RuntimeStudy):
        messages = result.input_errors + [f"{cfg}: {e}" for cfg, errs in zip(result.names, result.errors, strict=True)
                                          for e in errs if e is not None]
    else:
        messages = list(getattr(result, "input_errors", []))
    return list(dict.fromkeys(messages))


def run_experiment(
    name: str, images: str | os.PathLike | None, labels: str | os.PathLike | None,
    models: Sequence[str] | None = None, *, raw: str | os.PathLike | None = None, limit: int | None = None,
    seed: int = 0, threads: int | None = None, progress: Progress | None = None,
) -> StudyResult:
    """Run experiment ``name`` (one of :data:`EXPERIMENT_NAMES` but ``mitigation``).

    Parameters
    ----------
    name
        The experiment.
    images, labels
        The labelled folder: images and the labels CSV (``file``, ``class_index``).
        ``isp-psnr`` may go without them when ``raw`` is given.
    models
        Model names or paths; None: :data:`DEFAULT_MODEL` (``isp`` and ``decode`` use the first;
        ``runtime``: every model given, default the built-in int8 and Coral builds).
    raw
        ``isp-psnr``: the raw frame folder (``meta.json`` and headerless mosaics).
    limit, seed, threads
        The first ``limit`` images of the CSV; seed of the randomized environments;
        worker threads (None: all cores; checked by every experiment, even those that do not use it).
    progress
        Receives the experiment's progress counts (None: quiet; ``isp-psnr`` reports none).
    """
    check_threads(threads)  # one meaning for every experiment, and before any work
    if name == "mitigation":
        raise ValueError("mitigation: run it with `instab characterize --experiment mitigation` (its own options)")
    if name == "isp-psnr":
        paths: list[Path] | None = None
        label_errors: list[str] = []
        if images is not None and labels is not None:
            items, label_errors = read_labels_csv(labels, images, limit)
            paths = [it.path for it in items]
        study = psnr_experiment(paths, raw)
        return dataclasses.replace(study, input_errors=label_errors + study.input_errors)
    if images is None or labels is None:
        raise ValueError(f"{name}: images and labels are required")
    if name == "runtime":
        return runtime_experiment(images, labels, models, limit=limit, progress=progress)
    models = list(models) if models else [DEFAULT_MODEL]
    if name == "isp":
        return isp_experiment(images, labels, models[0], limit=limit, seed=seed, threads=threads, progress=progress)
    if name == "decode":  # deterministic: the seed plays no part
        return decode_experiment(images, labels, models[0], limit=limit, threads=threads, progress=progress)
    return run_env_experiment(name, images, labels, models, limit=limit, seed=seed, threads=threads,
                              progress=progress)


__all__ = [
    "DEFAULT_MODEL",
    "EXPERIMENT_NAMES",
    "experiment_models",
    "input_errors",
    "run_env_experiment",
    "run_experiment",
]
