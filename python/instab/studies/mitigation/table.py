"""The study's table: one row per method, the model each row measured, and the result it becomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx

from instab._shared.progress import Progress


class Table:
    """The rows in the order they were measured, and the trained head (or model) behind each.

    ``relative_reduction`` of a row is its instability's reduction relative to
    ``baseline_instability`` (None when the baseline is perfectly stable).
    """

    def __init__(self, baseline_instability: float, log: Progress) -> None:
        self.baseline_instability = baseline_instability
        self.log = log
        self.rows: list[dict[str, Any]] = []
        self.models: dict[int, onnx.ModelProto] = {}

    @property
    def last(self) -> int:
        """The index of the row added last."""
        return len(self.rows) - 1

    def add(self, method: str, loss: str | None, noise: str | None, alpha: float | None, m: dict[str, Any],
            sigma: float | None = None, head: onnx.ModelProto | None = None, **extra: Any) -> dict[str, Any]:
        """Append a row from the measures ``m`` (see :func:`measure`) and log it; ``head`` is what it measured."""
        b_inst = self.baseline_instability
        r = {"method": method, "loss": loss, "noise": noise, "alpha": alpha, "accuracy": m["accuracy"],
             "instability": m["instability"], "sigma": sigma, "accuracy_per_device": m["accuracy_per_device"],
             "n_unstable": m["n_unstable"],
             "relative_reduction": None if not b_inst else (b_inst - m["instability"]) / b_inst,
             "int8_accuracy": None, "int8_instability": None, **extra}
        self.rows.append(r)
        if head is not None:
            self.models[self.last] = head
        self.log(f"  {method} {loss or ''} {noise or ''} alpha={alpha}: accuracy {m['accuracy']:.4f}, "
                 f"instability {m['instability']:.4f}")
        return r

    def repeat(self, i: int, **changes: Any) -> None:
        """Append a copy of row ``i`` (same model) with ``changes``: a setting that would train the same thing."""
        self.rows.append({**self.rows[i], **changes})
        self.models[self.last] = self.models[i]

    def most_stable(self) -> int | None:
        """The stability-trained row (labelled or label-free) with the lowest instability; None if there is none."""
        stab_rows = [i for i, r in enumerate(self.rows) if r["method"].startswith("stability")]
        return min(stab_rows, key=lambda i: self.rows[i]["instability"]) if stab_rows else None


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}"


@dataclass
class MitigationResult:
    """The study's table (``rows``) and everything needed to read it (a :class:`~instab.studies.result.StudyResult`).

    ``meta`` describes the run (model, devices, image counts, baseline, config, timing,
    saved models); ``search`` holds one record per validation run of the alpha/sigma search.
    """

    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    search: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """``{"rows": ..., "meta": ..., "search": ...}``, as written to ``mitigation.json``."""
        return {"rows": self.rows, "meta": self.meta, "search": self.search}

    def to_text(self) -> str:
        """The table as printed: percentages, one line per row."""
        lines = [f"{'method':<30} {'loss':<9} {'noise':<20} {'alpha':>6} {'acc':>7} {'instab':>7} {'rel':>7}"
                 f" {'int8 acc':>8} {'int8 ins':>8}"]
        for r in self.rows:
            lines.append(
                f"{r['method']:<30} {r['loss'] or '':<9} {r['noise'] or '':<20} "
                f"{'' if r['alpha'] is None else format(r['alpha'], 'g'):>6} {_pct(r['accuracy']):>7} "
                f"{_pct(r['instability']):>7} {_pct(r.get('relative_reduction')):>7} "
                f"{_pct(r.get('int8_accuracy')):>8} {_pct(r.get('int8_instability')):>8}"
            )
        return "\n".join(lines)


__all__ = ["MitigationResult", "Table"]
