"""``instab characterize``: one of the source study's experiments on a folder of labelled images.

:func:`run_experiment` dispatches by name and returns a
:class:`~instab.studies.result.StudyResult`; the command prints its ``to_text()``
and writes ``<experiment>.txt`` and ``<experiment>.json`` (its ``to_dict()``).
The ``mitigation`` experiment has its own options and runs through
``instab.cli.mitigation``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from instab.environments import devices
from instab.io.labels import read_labels_csv
from instab.studies import environment as experiments
from instab.studies.environment import ExperimentTable, ExperimentTables
from instab.studies.isp import isp_experiment, psnr_experiment
from instab.studies.result import StudyResult
from instab.studies.runtime import runtime_experiment

DEFAULT_MODEL = "efficientnet-lite0"

#: The experiments of ``instab characterize --experiment`` (``mitigation`` runs through its own module).
EXPERIMENT_NAMES = ["compression-quality", "compression-format", "isp", "isp-psnr", "noise", "runtime", "devices",
                    "top-k", "mitigation"]


def _as_tables(name: str, result: ExperimentTable | ExperimentTables) -> ExperimentTables:
    return result if isinstance(result, ExperimentTables) else ExperimentTables(name, [result])


def run_env_experiment(name: str, images: str | os.PathLike, labels: str | os.PathLike, models: Sequence[str], *,
                       limit: int | None = None, seed: int = 0, threads: int | None = None) -> ExperimentTables:
    """The experiments that are a list of environments, one table per model (and per sweep for ``noise``)."""
    kwargs: dict[str, Any] = {"limit": limit, "seed": seed, "threads": threads}
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


def run_experiment(
    name: str, images: str | os.PathLike | None, labels: str | os.PathLike | None,
    models: Sequence[str] | None = None, *, raw: str | os.PathLike | None = None, limit: int | None = None,
    seed: int = 0, threads: int | None = None,
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
        Model names or paths; None: :data:`DEFAULT_MODEL` (``isp`` uses the first;
        ``runtime``: the int8 model and another build of it, default the built-in pair).
    raw
        ``isp-psnr``: the raw frame folder (``meta.json`` and headerless mosaics).
    limit, seed, threads
        The first ``limit`` images of the CSV; seed of the randomized environments;
        worker threads (None: all cores).
    """
    if name == "mitigation":
        raise ValueError("mitigation: run it with `instab characterize --experiment mitigation` (its own options)")
    if name == "isp-psnr":
        paths = None
        if images is not None and labels is not None:
            paths = [it.path for it in read_labels_csv(labels, images, limit)[0]]
        return psnr_experiment(paths, raw)
    if images is None or labels is None:
        raise ValueError(f"{name}: images and labels are required")
    if name == "runtime":
        return runtime_experiment(images, labels, models, limit=limit)
    models = list(models) if models else [DEFAULT_MODEL]
    if name == "isp":
        return isp_experiment(images, labels, models[0], limit=limit, seed=seed, threads=threads)
    return run_env_experiment(name, images, labels, models, limit=limit, seed=seed, threads=threads)


__all__ = [
    "DEFAULT_MODEL",
    "EXPERIMENT_NAMES",
    "run_env_experiment",
    "run_experiment",
]
