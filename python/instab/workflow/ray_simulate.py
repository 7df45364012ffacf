"""``simulate`` on a Ray cluster: the local engine's chunks of images as Ray Data tasks.

Each unit is one chunk of :func:`~instab.workflow.simulate.simulate` (decode the chunk's
images once, apply every environment and shot, write the PNGs), run by
:func:`~instab.workflow.simulate.simulate_chunk` in a CPU task with the chunk's position in
the image list, which keys its randomness: the PNGs are the local engine's, byte for byte.
The workers read the images and write the PNGs themselves, so both folders must be
visible at the same paths on every node (a shared file system); the driver collects the
manifest rows and writes ``manifest.csv`` in the local engine's order. A retried task
writes the same files again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from instab._shared.progress import Progress, report
from instab.environments.registry import Environment, parse
from instab.io.labels import LabeledImage
from instab.io.manifest import ManifestRow, write_manifest
from instab.workflow.ray_engine import check_reachable, connected, run_units
from instab.workflow.simulate import SimulationSummary, simulate_chunk


def simulate_unit(batch: dict[str, np.ndarray], *, envs: list[Environment], out: str, repeats: int,
                  seed: int) -> dict[str, np.ndarray]:
    """A Ray Data task: each unit's chunk simulated (one thread: the task holds one CPU)."""
    results = []
    for start, images_json in zip(batch["start"], batch["images"], strict=True):
        part = [LabeledImage(Path(p), tuple(labels)) for p, labels in json.loads(images_json)]
        done = simulate_chunk(part, int(start), envs, Path(out), repeats=repeats, seed=seed, threads=1)
        rows = [[r.image_id, r.environment, str(r.path), list(r.labels), r.repeat] for r in done.rows]
        results.append(json.dumps({"rows": rows, "errors": done.errors}))
    return {"unit": batch["unit"], "result": np.array(results, dtype=object)}


def simulate_ray(
    images: Sequence[LabeledImage],
    environments: Sequence[str | Environment],
    out_dir: str | Path,
    *,
    repeats: int = 1,
    seed: int = 0,
    chunk: int = 32,
    address: str | None = None,
    progress: Progress | None = None,
) -> SimulationSummary:
    """:func:`~instab.workflow.simulate.simulate` on a Ray cluster (see the module's docstring); the same
    files and manifest. ``address``: the cluster (:func:`~instab.workflow.ray_engine.connected`)."""
    if repeats < 1:
        raise ValueError(f"repeats: must be >= 1, got {repeats}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected a positive int, got {chunk!r}")
    envs = [parse(e) if isinstance(e, str) else e for e in environments]
    if not envs:
        raise ValueError("environments: give at least one environment")
    if address is not None:
        check_reachable(address)  # before anything is written
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = SimulationSummary(Path(out_dir) / "manifest.csv")
    starts = list(range(0, len(images), chunk))
    units = [{"unit": i, "start": start, "images": json.dumps(
        [[str(Path(item.path).resolve()), list(item.labels)] for item in images[start : start + chunk]])}
        for i, start in enumerate(starts)]
    results: dict[int, dict[str, list]] = {}
    total, done = len(images) * len(envs) * repeats, 0
    if not units:  # no images: an empty manifest, as the local engine writes
        write_manifest(summary.manifest, [])
        return summary
    with connected(address) as ray:
        stage = (simulate_unit, {"num_cpus": 1, "fn_kwargs": {"envs": envs, "out": str(out), "repeats": repeats,
                                                               "seed": seed}})
        for result in run_units(ray, units, [stage]):
            unit = int(result["unit"])
            if unit in results:
                continue  # delivered twice (a retried task): its files were written twice, the same
            results[unit] = json.loads(result["result"])
            done += len(images[starts[unit] : starts[unit] + chunk]) * len(envs) * repeats
            report(progress, "simulated", done, total, "images")
    rows = []
    for unit in sorted(results):  # the local engine's order: chunk by chunk
        rows += [ManifestRow(0, image_id, env, Path(path), tuple(labels), repeat)
                 for image_id, env, path, labels, repeat in results[unit]["rows"]]
        summary.errors += results[unit]["errors"]
    summary.written = len(rows)
    write_manifest(summary.manifest, rows)
    return summary


__all__ = ["simulate_ray", "simulate_unit"]
