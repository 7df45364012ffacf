"""``score`` on a Ray cluster: a manifest -> a results dataset (Parquet), resumable and fault tolerant.

The driver (this process) validates the manifest as the local engine does, leaves out the
items the dataset already holds for this model (keyed by model hash, image, environment,
repeat), and cuts the rest into units: at most ``unit_rows`` rows of one environment, in
manifest order. Ray Data runs each unit through two steps:

1. :func:`decode_unit`: camera raw files developed, every image decoded to pixels, each
   failure kept as that item's error (the messages of the local engine);
2. :class:`ScoreActor`, an actor holding one :class:`~instab.inference.classifier.Classifier`
   (on a GPU where the cluster has them): resize, inference and top-k of the decoded
   images, then the unit's rows encoded as one Parquet file's bytes.

Step 1 runs in CPU tasks that feed GPU actors (or actors of several CPUs); one-CPU actors
run it themselves (see :func:`~instab.workflow.ray_engine.plan_resources`).

The driver writes each unit's file into the dataset (see :mod:`instab.io.dataset` for the
layout and why every item is there exactly once). Classifier outputs do not depend on
batch composition or thread count, so the rows equal those of ``score --engine local``,
whose store exports to the same Parquet values.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from instab import models as _models
from instab._shared import provenance
from instab._shared.decode import decode
from instab._shared.progress import Progress, report
from instab.inference.classifier import Classifier
from instab.io.dataset import ResultDataset, encode_part, write_atomic
from instab.io.manifest import ManifestRow, read_manifest
from instab.io.records import ResultRow
from instab.io.store import Key, model_hash
from instab.isp import rawfile
from instab.workflow.ray_engine import check_reachable, check_resources, connected, plan_resources, run_units
from instab.workflow.score import ScoreInterrupted, ScoreSummary

#: Manifest rows per unit (one file of the dataset) by default.
UNIT_ROWS = 128


@dataclass(frozen=True)
class Unit:
    """Rows of one environment that one task decodes and one actor scores; its file is named by ``index``."""

    index: int
    environment: str
    rows: list[ManifestRow]

    def payload(self) -> dict[str, Any]:
        """What the cluster gets: the index and the rows as JSON (absolute paths: workers have other folders)."""
        rows = [[r.image_id, r.environment, os.path.abspath(r.path), str(r.path), list(r.labels), r.repeat, r.group]
                for r in self.rows]
        return {"unit": self.index, "rows": json.dumps(rows)}


def plan_units(rows: Sequence[ManifestRow], done: set[Key], unit_rows: int = UNIT_ROWS) -> list[Unit]:
    """The rows whose key is not in ``done``, by environment (in order of first appearance, manifest order within
    one), cut into units of at most ``unit_rows``: one environment per unit, so one folder per file."""
    by_env: dict[str, list[ManifestRow]] = {}
    for r in rows:
        if (r.image_id, r.environment, r.repeat) not in done:
            by_env.setdefault(r.environment, []).append(r)
    units: list[Unit] = []
    for env, todo in by_env.items():
        for start in range(0, len(todo), unit_rows):
            units.append(Unit(len(units), env, todo[start : start + unit_rows]))
    return units


def decode_unit(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data stage 1 (a CPU task): each unit's images decoded, as the local engine decodes them."""
    payloads = []
    for rows_json in batch["rows"]:
        rows = json.loads(rows_json)
        items, raw_errors = rawfile.develop_paths([r[2] for r in rows])
        images: list[np.ndarray | None] = []
        errors: list[str | None] = []
        for i, item in enumerate(items):
            image, error = None, raw_errors.get(i)
            if error is None:
                try:
                    image = decode(item)
                except Exception as exc:  # any unreadable item becomes its error, as in Classifier.predict
                    error = f"{type(exc).__name__}: {exc}"
            images.append(image)
            errors.append(error)
        payloads.append(pack_images(images, errors))
    return {"unit": batch["unit"], "rows": batch["rows"], "payload": np.array(payloads, dtype=object)}


def pack_images(images: list[np.ndarray | None], errors: list[str | None]) -> bytes:
    """Decoded images (uint8 HWC, or None) and errors as bytes, for :func:`unpack_images`."""
    return pickle.dumps(([None if im is None else (im.tobytes(), im.shape) for im in images], errors),
                        protocol=pickle.HIGHEST_PROTOCOL)


def unpack_images(data: bytes) -> tuple[list[np.ndarray | None], list[str | None]]:
    """What :func:`pack_images` packed. Pixels travel as bytes, not pickled arrays: an unpickled array's dtype
    is a copy of ``np.uint8``'s, which instab's core (it checks the dtype object itself) refuses."""
    packed, errors = pickle.loads(data)
    return [None if p is None else np.frombuffer(p[0], dtype=np.uint8).reshape(p[1]) for p in packed], errors


class ScoreActor:
    """Ray Data stage 2 (an actor): one classifier scores the decoded images of each unit it gets."""

    def __init__(self, model: list[Any], identity: str, k: int, batch_size: int, cpus: int, provider: str):
        import ray  # optional dependency (instab[ray]): only the Ray engine's workers run this

        m = ray.get(model[0])  # the model travels in the object store once, not with every actor's arguments
        self.name, self.identity, self.k, self.batch_size = m.name, identity, k, batch_size
        # the actor's CPUs are its inference threads
        self.classifier = Classifier(m, provider=provider, threads=cpus, batch_size=batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "payload" not in batch:  # no decoding stage before this one: decode here (see plan_resources)
            batch = decode_unit(batch)
        parts, scored, failed = [], [], []
        for rows_json, payload in zip(batch["rows"], batch["payload"], strict=True):
            rows = json.loads(rows_json)
            images, errors = unpack_images(payload)
            result, messages = self.score(rows, images, errors)
            parts.append(encode_part(result))
            scored.append(sum(r.error is None for r in result))
            failed.append(json.dumps(messages))
        return {"unit": batch["unit"], "part": np.array(parts, dtype=object), "scored": np.array(scored),
                "failed": np.array(failed, dtype=object)}

    def score(self, rows: list[Any], images: list[np.ndarray | None],
              errors: list[str | None]) -> tuple[list[ResultRow], list[str]]:
        """One unit's rows: the decoded images scored, the others failed with their error."""
        good = [i for i, image in enumerate(images) if image is not None]
        classes: list[Any] = [None] * len(rows)
        scores: list[Any] = [None] * len(rows)
        for start, part in self.classifier.iter_predict([images[i] for i in good], self.k,
                                                        batch_size=self.batch_size):
            for j, error in enumerate(part.errors):
                i = good[start + j]
                errors[i] = error
                if error is None:
                    classes[i], scores[i] = part.classes[j].tolist(), part.scores[j].tolist()
        result, messages = [], []
        for i, (image_id, env, abspath, shown, labels, repeat, group) in enumerate(rows):
            result.append(ResultRow(self.name, image_id, env, repeat, abspath, tuple(labels), group, classes[i],
                                    scores[i], errors[i], self.identity, self.k))
            if errors[i] is not None:
                messages.append(f"{image_id} [{env}] {shown}: {errors[i]}")
        return result, messages


def score_manifest_ray(
    manifest_path: str | Path,
    model: str | _models.Model,
    out: str | Path,
    *,
    k: int = 5,
    batch_size: int = 32,
    address: str | None = None,
    actors: int | None = None,
    cpus_per_actor: int = 1,
    provider: str = "auto",
    unit_rows: int = UNIT_ROWS,
    decode_tasks: bool | None = None,
    class_names: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> ScoreSummary:
    """Score every (image, environment, repeat) of a manifest on a Ray cluster into a results dataset.

    Parameters
    ----------
    manifest_path, model, out
        The manifest CSV, a model name/path or :class:`~instab.models.Model`, the dataset's folder
        (created; an existing dataset is resumed: items it holds for this model are skipped).
    k, batch_size
        Classes stored per item, inference batch size (of each actor).
    address
        The cluster (see :func:`~instab.workflow.ray_engine.connected`); None starts one on this machine.
    actors, cpus_per_actor, provider
        Inference actors at most (default: one per GPU, else half the CPUs), CPUs (and inference
        threads) of each CPU actor, and ``"auto"``/``"cpu"``/``"cuda"`` (auto: CUDA where the cluster has GPUs).
    unit_rows
        Manifest rows per unit of work (and per file of the dataset).
    decode_tasks
        Decode in CPU tasks that feed the actors (True) or in the actors (False); None: as
        :func:`~instab.workflow.ray_engine.plan_resources` finds best for the cluster.
    class_names, progress
        As for :func:`~instab.workflow.score.score_manifest`.

    Raises
    ------
    ScoreInterrupted
        On Ctrl-C, saying how many results are stored (a rerun resumes).
    instab.workflow.ray_engine.ClusterError, ConnectionError
        When the cluster cannot be reached or cannot run the work; the units written so far are kept.
    ValueError
        For bad options, or a dataset holding this model's results scored with another ``k``.
    """
    for name, value in (("batch_size", batch_size), ("unit_rows", unit_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    check_resources(provider, actors, cpus_per_actor)
    if address is not None:
        check_reachable(address)  # before the dataset is made
    started = provenance.utc_now()
    m = model if isinstance(model, _models.Model) else _models.load(model)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= m.spec.num_classes:
        raise ValueError(f"k: expected an int in 1..{m.spec.num_classes}, got {k!r}")
    manifest = read_manifest(manifest_path, class_names=class_names, n_classes=m.spec.num_classes)
    wide = next((r for r in manifest.rows if not -(2**31) <= r.repeat < 2**31), None)
    if wide is not None:  # the dataset's long format holds repeats as int32 (as instab export does)
        raise ValueError(f"repeat: {wide.repeat} (manifest line {wide.line}) does not fit a results dataset "
                         "(32-bit repeats); score this manifest into a SQLite store (--engine local)")
    summary = ScoreSummary(manifest, m.name, model_hash(m))
    with ResultDataset(out, create=True) as dataset:
        _check_k(dataset, summary.model_hash, k)
        dataset.add_model(summary.model_hash, m.name)
        units = plan_units(manifest.rows, dataset.stored_keys(summary.model_hash), unit_rows)
        summary.already_done = len(manifest.rows) - sum(len(u.rows) for u in units)
        run = provenance.record(started, models={m.name: summary.model_hash}, k=k, engine="ray", address=address,
                                manifest=str(Path(manifest_path).resolve()))
        runs = [*_list(dataset.meta().get("runs")), {**run, "finished": None}]
        dataset.set_meta("runs", runs)
        dataset.set_meta("manifest", run["manifest"])
        dataset.set_meta("manifest_errors", manifest.errors)
        try:
            if units:
                _run(dataset, m, units, summary, k=k, batch_size=batch_size, address=address,
                     resources=(provider, actors, cpus_per_actor, decode_tasks), progress=progress)
        except KeyboardInterrupt:
            raise ScoreInterrupted(f"{len(dataset.stored_keys(summary.model_hash))} results of model {m.name} are "
                                   f"stored in {out} ({summary.scored + len(summary.failed)} by this run); run the "
                                   "same command again to resume") from None
        runs[-1] = {**run, "finished": provenance.utc_now(), "scored": summary.scored,
                    "failed": len(summary.failed), "already_done": summary.already_done}
        dataset.set_meta("runs", runs)
    return summary


def _run(dataset: ResultDataset, m: _models.Model, units: list[Unit], summary: ScoreSummary, *, k: int,
         batch_size: int, address: str | None, resources: tuple[str, int | None, int, bool | None],
         progress: Progress | None) -> None:
    """Run the units on the cluster; write each unit's file as it comes back, once."""
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    total, done = sum(len(u.rows) for u in units), 0
    written: set[int] = set()  # a unit delivered twice (a retried task) is written and counted once
    with connected(address) as ray:
        res = plan_resources(ray, *resources)
        actor = res.actor_options(model=[ray.put(m)], identity=summary.model_hash, k=k, batch_size=batch_size,
                                  cpus=res.cpus_per_actor, provider=res.provider)
        stages = [] if res.decode_in_actor else [(decode_unit, {"num_cpus": 1})]
        t0 = time.perf_counter()
        for out in run_units(ray, [u.payload() for u in units], [*stages, (ScoreActor, actor)]):
            unit = units[int(out["unit"])]
            if unit.index in written:
                continue
            path = dataset.part_path(summary.model_hash, m.name, unit.environment, run_id, unit.index)
            write_atomic(path, bytes(out["part"]))
            written.add(unit.index)
            summary.scored += int(out["scored"])
            summary.failed += json.loads(out["failed"])
            summary.seconds = time.perf_counter() - t0
            done += len(unit.rows)
            report(progress, "scored", done, total, "images", f"{done / max(summary.seconds, 1e-9):.1f} images/s")


def _check_k(dataset: ResultDataset, identity: str, k: int) -> None:
    """A dataset holds one k per model: rows scored with another k are never mixed in (give another --out)."""
    stored = {v for batch in dataset.scan(identity, ["k"]) for v in batch.column(0).to_pylist()}
    if stored - {k}:
        raise ValueError(f"k: {dataset.root} holds results of this model scored with k={sorted(stored)[0]}; "
                         f"this run asks k={k}: give the same -k, or another --out")


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


__all__ = [
    "UNIT_ROWS",
    "ScoreActor",
    "Unit",
    "decode_unit",
    "pack_images",
    "plan_units",
    "score_manifest_ray",
    "unpack_images",
]
