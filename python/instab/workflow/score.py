"""Bulk scoring: a manifest -> the results store, resumable after any interruption."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from instab import models as _models
from instab._shared import provenance
from instab._shared.decode import is_raw_path
from instab._shared.progress import Progress, report
from instab._shared.provenance import utc_now
from instab._shared.validation import check_threads
from instab.inference.classifier import Classifier, Prediction
from instab.io.manifest import Manifest, ManifestRow, read_manifest
from instab.io.store import Key, ResultRow, ResultStore, StoredItem, StoreWriteError, model_hash
from instab.isp import rawfile


class ScoreInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`score_manifest`; the message says how many results are stored (a rerun resumes)."""


@dataclass
class ScoreSummary:
    """What one :func:`score_manifest` run did: rows scored now, already stored, scored again, failed."""

    manifest: Manifest
    model: str
    model_hash: str = ""
    already_done: int = 0
    scored: int = 0
    rescored: int = 0  # stored rows scored again: another k or image path (counted in ``scored`` too)
    relabelled: int = 0  # stored rows whose labels or group were corrected in place
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        """The printed summary: the manifest's counts, then this run's."""
        again = f", {self.rescored} scored again (other k or image path)" if self.rescored else ""
        relabelled = f", labels or group updated for {self.relabelled}" if self.relabelled else ""
        lines = [
            f"manifest: {self.manifest.summary()}",
            f"model {self.model}: {self.scored} scored now, {self.already_done} already in the store{again}"
            f"{relabelled}, {len(self.failed)} failed ({self.images_per_second:.1f} images/s)",
        ]
        lines += [f"  {msg}" for msg in self.failed[:10]]
        if len(self.failed) > 10:
            lines.append(f"  ... and {len(self.failed) - 10} more (see the error column of the store)")
        return "\n".join(lines)


@dataclass
class _Plan:
    """What a run has to do, given what the store holds."""

    todo: list[ManifestRow] = field(default_factory=list)  # to score (new, or stale)
    stale: int = 0  # of them, stored with another k or image path
    relabel: list[tuple[Key, tuple[int, ...], int | None]] = field(default_factory=list)


def _plan(rows: Sequence[ManifestRow], stored: dict[Key, StoredItem], k: int) -> _Plan:
    """A stored row is reused when it was scored with this k from this image path (a failed one: same path)."""
    plan = _Plan()
    for r in rows:
        item = stored.get((r.image_id, r.environment, r.repeat))
        if item is None:
            plan.todo.append(r)
        elif item.path != _abspath(r) or (item.error is None and item.k != k):
            plan.todo.append(r)
            plan.stale += 1
        elif item.labels != r.labels or item.group != r.group:
            plan.relabel.append(((r.image_id, r.environment, r.repeat), r.labels, r.group))
    return plan


def _abspath(row: ManifestRow) -> str:
    return os.path.abspath(row.path)


def score_manifest(
    manifest_path: str | Path,
    model: str | _models.Model,
    out: str | Path,
    *,
    k: int = 5,
    batch_size: int = 32,
    threads: int | None = None,
    class_names: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> ScoreSummary:
    """Score every (image, environment, repeat) of a manifest into a SQLite results store.

    Rows already in the store for this model (the same content: see
    :func:`~instab.io.store.model_hash`) are skipped, so an interrupted run
    resumes where it stopped; a stored row scored with another ``k`` or from
    another image path is scored again, and corrected labels or groups are
    updated in place. Each batch is one transaction. The store's ``meta`` table
    gets a provenance record per run (``runs``).

    Parameters
    ----------
    manifest_path, model, out
        The manifest CSV, a model name/path or :class:`~instab.models.Model`, the SQLite store.
    k, batch_size, threads
        Classes stored per item, inference batch size, ONNX Runtime threads (None: all cores).
    class_names
        Names for manifests whose labels are class names.
    progress
        Receives ``"scored N/M (P%) R images/s"`` (a :class:`~instab._shared.progress.Count`)
        after every batch; None: quiet.

    Raises
    ------
    ScoreInterrupted
        On Ctrl-C, saying how many results are stored.
    StoreWriteError
        When the store cannot be written (e.g. the disk is full); what was stored is kept.
    TypeError, ValueError
        For a bad ``threads`` (see :func:`~instab._shared.validation.check_threads`), before the store is opened.
    """
    check_threads(threads)  # fail fast: before the model is loaded or the store is created
    started = utc_now()
    m = model if isinstance(model, _models.Model) else _models.load(model)
    manifest = read_manifest(manifest_path, class_names=class_names, n_classes=m.spec.num_classes)
    summary = ScoreSummary(manifest, m.name, model_hash(m))
    with ResultStore(out) as store:
        try:
            _run(store, m, manifest, summary, started, manifest_path, k=k, batch_size=batch_size,
                 threads=threads, progress=progress)
        except KeyboardInterrupt:
            raise ScoreInterrupted(f"{store.count(summary.model_hash)} results of model {m.name} are stored in "
                                   f"{out} ({summary.scored + len(summary.failed)} by this run); run the same "
                                   "command again to resume") from None
        except StoreWriteError as exc:
            raise StoreWriteError(f"{exc}; the {store.count(summary.model_hash)} results stored so far are kept: "
                                  "run the same command again to resume (after freeing space if the disk is full)"
                                  ) from None
    return summary


def _run(store: ResultStore, m: _models.Model, manifest: Manifest, summary: ScoreSummary, started: str,
         manifest_path: str | Path, *, k: int, batch_size: int, threads: int | None, progress: Progress | None) -> None:
    """Record the run's provenance, update what is stored, score what is missing, record its end."""
    run = provenance.record(started, models={m.name: summary.model_hash}, k=k,
                            manifest=str(Path(manifest_path).resolve()))
    run["finished"] = None  # set when the run ends: a run that was stopped keeps None
    stored = store.meta().get("runs", [])  # a JSON list of provenance records
    runs = [*(stored if isinstance(stored, list) else []), run]
    store.set_meta("runs", runs)
    store.set_meta("manifest", run["manifest"])
    store.set_meta("manifest_errors", manifest.errors)
    plan = _plan(manifest.rows, store.stored(summary.model_hash), k)
    summary.already_done = len(manifest.rows) - len(plan.todo)
    summary.rescored = plan.stale
    if plan.relabel:
        summary.relabelled = store.relabel(summary.model_hash, plan.relabel)
    _score(store, m, plan.todo, summary, k=k, batch_size=batch_size, threads=threads, progress=progress)
    runs[-1] = {**run, "finished": utc_now(), "scored": summary.scored, "failed": len(summary.failed),
                "already_done": summary.already_done}
    store.set_meta("runs", runs)


def _score(store: ResultStore, m: _models.Model, todo: list[ManifestRow], summary: ScoreSummary, *, k: int,
           batch_size: int, threads: int | None, progress: Progress | None) -> None:
    """Score ``todo`` batch by batch into ``store`` (stale rows are overwritten in place)."""
    if not todo:
        return
    classifier = Classifier(m, threads=threads, batch_size=batch_size)
    t0 = time.perf_counter()
    # The classifier reads encoded images only: camera raw files are developed here, one batch at a time.
    step = batch_size if any(is_raw_path(r.path) for r in todo) else len(todo)
    for base in range(0, len(todo), step):
        items, raw_errors = rawfile.develop_paths([r.path for r in todo[base : base + step]])
        for start, part in classifier.iter_predict(items, k, batch_size=batch_size):
            part.errors[:] = [raw_errors.get(start + i, e) for i, e in enumerate(part.errors)]
            _store_part(store, m.name, todo, base + start, part, summary, k)
            summary.seconds = time.perf_counter() - t0
            done_now = base + start + len(part)
            report(progress, "scored", done_now, len(todo), "images",
                   f"{done_now / max(summary.seconds, 1e-9):.1f} images/s")


def _store_part(store: ResultStore, model: str, todo: list[ManifestRow], start: int, part: Prediction,
                summary: ScoreSummary, k: int) -> None:
    """Write one scored batch (rows ``todo[start:]``) into ``store`` and count it in ``summary``."""
    rows = []
    for i, err in enumerate(part.errors):
        r = todo[start + i]
        ok = err is None
        rows.append(ResultRow(
            model, r.image_id, r.environment, r.repeat, _abspath(r), r.labels, r.group,
            part.classes[i].tolist() if ok else None, part.scores[i].tolist() if ok else None, err,
            summary.model_hash, k,
        ))
        if not ok:
            summary.failed.append(f"{r.image_id} [{r.environment}] {r.path}: {err}")
    rejected: list[str] = []
    store.write(rows, replace=True, rejected=rejected)  # a stale row is overwritten in place
    summary.failed += rejected
    summary.scored += sum(e is None for e in part.errors) - len(rejected)

__all__ = [
    "ScoreInterrupted",
    "ScoreSummary",
    "score_manifest",
]
