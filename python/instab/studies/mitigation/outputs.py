"""The study's files: ``mitigation.json`` (everything), ``mitigation.csv`` (the table) and ``mitigation.html``."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

from instab.studies.mitigation.table import MitigationResult

#: The table's columns in the CSV and HTML files.
COLUMNS = ("method", "loss", "noise", "sigma", "alpha", "accuracy", "instability", "relative_reduction",
           "int8_accuracy", "int8_instability")

#: Columns shown as percentages.
_RATES = ("accuracy", "instability", "relative_reduction", "int8_accuracy", "int8_instability")


def _cell(column: str, v: Any) -> str:
    if v is None:
        return ""
    if column in _RATES:
        return f"{100 * v:.2f}%"
    return html.escape(str(v))


def _write_csv(result: MitigationResult, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in result.rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in COLUMNS])


def _html(result: MitigationResult) -> str:
    meta = result.meta
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(c, r.get(c))}</td>" for c in COLUMNS) + "</tr>" for r in result.rows
    )
    search = "".join(
        f"<tr><td>{s['loss']}</td><td>{html.escape(s['noise'])}</td><td>{s['alpha']:g}</td>"
        f"<td>{100 * s['val_accuracy']:.2f}%</td><td>{100 * s['val_instability']:.2f}%</td></tr>"
        for s in result.search
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>instab mitigation study</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}</style>"
        f"<h1>Mitigation study</h1><p>Start model {html.escape(str(meta.get('model')))}; "
        f"{meta.get('n_train')} training images through {html.escape(str(meta.get('train_device')))} "
        f"(second device {html.escape(str(meta.get('second_device')))}); {meta.get('n_eval')} evaluation images "
        f"through {html.escape(', '.join(meta.get('devices', [])))}. Accuracy: mean top-1 over the devices; "
        f"instability across them (top-k rows: top-k). Seed {meta.get('seed')}.</p>"
        "<table><tr>" + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr>" + body + "</table>"
        "<h2>Validation search</h2><table><tr><th>loss</th><th>noise</th><th>alpha</th><th>val accuracy</th>"
        "<th>val instability</th></tr>" + search + "</table>"
    )


def write_outputs(result: MitigationResult, out: str | Path) -> dict[str, Path]:
    """Write ``mitigation.json`` (``{"rows": [...], "meta": ..., "search": ...}``), ``mitigation.csv`` (the
    table's :data:`COLUMNS`) and ``mitigation.html`` to the folder ``out`` (created); return their paths by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "mitigation.json", "csv": out / "mitigation.csv", "html": out / "mitigation.html"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=1, default=float), encoding="utf-8")
    _write_csv(result, paths["csv"])
    paths["html"].write_text(_html(result), encoding="utf-8")
    return paths


__all__ = ["COLUMNS", "write_outputs"]
