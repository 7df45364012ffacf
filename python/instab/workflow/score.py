"""Bulk scoring: a manifest -> the results store, resumable after any interruption."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from instab import models as _models
from instab._shared.progress import Progress
from instab.inference.classifier import Classifier
from instab.io.manifest import Manifest, read_manifest
from instab.io.store import ResultRow, ResultStore


@dataclass
class ScoreSummary:
    """What one :func:`score_manifest` run did: rows scored now, already stored, failed."""

    manifest: Manifest
    model: str
    already_done: int = 0
    scored: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        """The printed summary: the manifest's counts, then this run's."""
        lines = [
            f"manifest: {self.manifest.summary()}",
            f"model {self.model}: {self.scored} scored now, {self.already_done} already in the store, "
            f"{len(self.failed)} failed ({self.images_per_second:.1f} images/s)",
        ]
        lines += [f"  {msg}" for msg in self.failed[:10]]
        if len(self.failed) > 10:
            lines.append(f"  ... and {len(self.failed) - 10} more (see the error column of the store)")
        return "\n".join(lines)


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

    Rows already in the store for this model are skipped, so an interrupted run
    resumes where it stopped. Each batch is one transaction.

    Parameters
    ----------
    manifest_path, model, out
        The manifest CSV, a model name/path or :class:`~instab.models.Model`, the SQLite store.
    k, batch_size, threads
        Classes stored per item, inference batch size, ONNX Runtime threads (None: all cores).
    class_names
        Names for manifests whose labels are class names.
    progress
        Receives ``"scored N/M (P%) R images/s"`` after every batch; None: quiet.
    """
    m = model if isinstance(model, _models.Model) else _models.load(model)
    manifest = read_manifest(manifest_path, class_names=class_names, n_classes=m.spec.num_classes)
    summary = ScoreSummary(manifest, m.name)
    with ResultStore(out) as store:
        store.set_meta("manifest", str(Path(manifest_path).resolve()))
        store.set_meta("manifest_errors", manifest.errors)
        done = store.done_keys(m.name)
        todo = [r for r in manifest.rows if (r.image_id, r.environment, r.repeat) not in done]
        summary.already_done = len(manifest.rows) - len(todo)
        if not todo:
            return summary
        classifier = Classifier(m, threads=threads, batch_size=batch_size)
        t0 = time.perf_counter()
        for start, part in classifier.iter_predict([r.path for r in todo], k, batch_size=batch_size):
            rows = []
            for i, err in enumerate(part.errors):
                r = todo[start + i]
                ok = err is None
                rows.append(ResultRow(
                    m.name, r.image_id, r.environment, r.repeat, str(r.path), r.labels, r.group,
                    part.classes[i].tolist() if ok else None, part.scores[i].tolist() if ok else None, err,
                ))
                if not ok:
                    summary.failed.append(f"{r.image_id} [{r.environment}] {r.path}: {err}")
            store.write(rows)
            summary.scored += sum(e is None for e in part.errors)
            summary.seconds = time.perf_counter() - t0
            if progress is not None:
                done_now = start + len(part)
                progress(f"scored {done_now}/{len(todo)} ({100 * done_now / len(todo):.0f}%) "
                         f"{done_now / max(summary.seconds, 1e-9):.1f} images/s")
    return summary

__all__ = [
    "ScoreSummary",
    "score_manifest",
]
