"""What ``instab mitigate`` returns and writes: the tuned models, every measure, and the before/after report."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instab.models import Model
from instab.studies.mitigate import report
from instab.studies.result import to_plain

#: The models of a run, in the order the tables show them.
ROW_NAMES = ("input", "plain", "stable")


def _reduction(before: float, after: float) -> float | None:
    return None if not before else 1.0 - after / before


@dataclass
class MitigateResult:
    """The tuned float models (``plain``, ``stable``), their int8 copies (and the input's), the measures of each
    (``rows[name]``, ``int8_rows[name]``) and ``meta`` (options, split, alpha search, timings, provenance)."""

    models: dict[str, Model]
    int8_models: dict[str, Model]
    rows: dict[str, dict[str, Any]]
    int8_rows: dict[str, dict[str, Any]]
    meta: dict[str, Any]

    def rate(self, name: str, protocol: str = "two_devices", k: int = 1, int8: bool = False) -> float:
        """Instability of model ``name`` under ``protocol`` (top-k), float or int8."""
        rows = self.int8_rows if int8 else self.rows
        return rows[name]["instability"][protocol][f"top{k}"]["rate"]

    def summary(self) -> dict[str, Any]:
        """The headline numbers: reductions of two-device instability, accuracy and retention changes."""
        if "stable" not in self.rows:
            return {}
        two = {n: self.rate(n) for n in self.rows}
        two8 = {n: self.rate(n, int8=True) for n in self.int8_rows}
        float_cut = _reduction(two["input"], two["stable"])
        int8_cut = _reduction(two8["input"], two8["stable"]) if {"input", "stable"} <= set(two8) else None
        acc = {n: r["accuracy"] for n, r in self.rows.items()}
        return {
            "two_devices_reduction_vs_input": float_cut,
            "two_devices_reduction_vs_plain": _reduction(two["plain"], two["stable"]),
            "all_devices_reduction_vs_input": _reduction(self.rate("input", "all"), self.rate("stable", "all")),
            "held_out_reduction_vs_input": _reduction(self.rate("input", "held_out"),
                                                      self.rate("stable", "held_out")),
            "int8_reduction_vs_input_int8": int8_cut,
            "int8_keeps_of_float_reduction": None if not float_cut or int8_cut is None else int8_cut / float_cut,
            "lowest_device_accuracy_change": min(acc["stable"][d] - acc["input"][d] for d in acc["input"]),
            "retention_change": (None if self.rows["input"]["retention_accuracy"] is None else
                                 self.rows["stable"]["retention_accuracy"] - self.rows["input"]["retention_accuracy"]),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything but the models, JSON-ready (NaN as None)."""
        return to_plain({"summary": self.summary(), "rows": self.rows, "int8_rows": self.int8_rows,
                         "meta": self.meta})

    def to_text(self) -> str:
        """The before/after table for a terminal."""
        return report.text_table(self)

    def write(self, out: str | Path) -> dict[str, Path]:
        """Write ``model.onnx`` (the stabilized model, or the plain one for ``--noise none``),
        ``model_int8.onnx`` (unless int8 was off), ``plain.onnx``, ``mitigation.json`` and ``report.html``
        into the new folder ``out``; return the paths by file name.

        The files are written into a temporary folder beside ``out`` that is renamed at
        the end, so ``out`` never holds half a result; an existing ``out`` is refused.
        """
        out = Path(out)
        if out.exists():
            raise FileExistsError(f"out: {out} already exists; choose a new folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            best = "stable" if "stable" in self.models else "plain"
            self.models[best].save(tmp / "model.onnx")
            if best in self.int8_models:
                self.int8_models[best].save(tmp / "model_int8.onnx")
            if best == "stable":
                self.models["plain"].save(tmp / "plain.onnx")
            (tmp / "mitigation.json").write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
            (tmp / "report.html").write_text(report.html_page(self), encoding="utf-8")
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return {p.name: p for p in sorted(out.iterdir())}


__all__ = ["ROW_NAMES", "MitigateResult"]
