"""Reports: a results store -> one self-contained HTML page users act on, plus JSON and CSV tables.

The page opens with what instability means and the headline rate (across devices,
one shot each, when repeat shots exist), then shows which images flip and how
they looked in each environment (:mod:`~instab.workflow.report_gallery`), accuracy
and instability with 95% Wilson intervals, top-1 vs top-3 (the study's Figure 9),
repeat shots within vs across devices (Figure 3(d)), the pairwise heat map,
confidence by stability and correctness (Figure 4), per class and per group, the
CSV tables and the provenance of the results. Figures are drawn by
:mod:`~instab.workflow.report_figures`, the page assembled by
:mod:`~instab.workflow.report_sections` and :mod:`~instab.workflow.report_html`, the numbers
computed by :mod:`~instab.workflow.report_analysis`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instab.io.csvfile import read_csv
from instab.io.labels import parse_label_field
from instab.io.store import ScoredSet
from instab.metrics.instability import InstabilityResult
from instab.workflow import report_figures as figs
from instab.workflow.report_analysis import (
    Analysis,
    accuracy_counts,
    analyse,
    analysis,
    column_names,
    confidence_groups,
    interval,
    per_class_order,
    rate_interval,
    versus_first,
)
from instab.workflow.report_gallery import GALLERY_LIMIT, per_image_table
from instab.workflow.report_sections import page_html

#: Every figure a report can hold (``repeats`` only with repeat shots, ``per_group`` only with a group column,
#: ``topk`` only when top-3 is stored).
FIGURES = ("accuracy", "topk", "repeats", "pairwise", "confidence", "per_class", "per_group")


@dataclass
class Report:
    """What :func:`write_report` wrote: the summary dict and the paths of its figures and tables."""

    out_dir: Path
    summary: dict[str, Any]
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)

    @property
    def html(self) -> Path:
        """The report page."""
        return self.out_dir / "report.html"


def class_names_from_labels(path: str | Path, what: str = "labels") -> list[str]:
    """Class names by index from a labels CSV with ``class_index`` and a ``name`` or ``class_name`` column.

    Rows with several ';'-separated indices name them in order when the name
    field has as many ';'-separated names. Unnamed indices are ``""`` (shown as numbers).
    ``what`` names the file in messages.
    """
    header, rows = read_csv(path, what)
    column = next((c for c in ("name", "class_name") if c in header), None)
    if "class_index" not in header or column is None:
        raise ValueError(f"{what}: {path} needs columns class_index and name (or class_name) for class names "
                         f"(has {header})")
    names: dict[int, str] = {}
    for row in rows:
        if row.fields is None:
            continue
        try:
            indices = parse_label_field(row.fields["class_index"] or "")
        except ValueError:
            continue  # a row read_labels_csv rejects too; names come from the good rows
        given = [s.strip() for s in (row.fields[column] or "").split(";")]
        if len(given) == len(indices):
            for c, name in zip(indices, given, strict=True):
                if name:
                    names.setdefault(c, name)
    return [names.get(c, "") for c in range(max(names, default=-1) + 1)]


def write_report(scored: ScoredSet, out_dir: str | Path, title: str = "instab report",
                 class_names: list[str] | None = None, provenance: dict[str, Any] | None = None, *,
                 gallery_limit: int = GALLERY_LIMIT) -> Report:
    """Write report.html, figures/*.png, summary.json, per_image.csv and the other CSV tables into ``out_dir``.

    Parameters
    ----------
    scored
        One model's stored results (:meth:`instab.io.store.ResultStore.load`); the gallery's
        thumbnails are read from the image paths it holds (``scored.paths``).
    out_dir
        The output folder (created).
    title
        The page's title.
    class_names
        Class names by index (the labels CSV's names, or the model's class list);
        unnamed classes show as their index.
    provenance
        What produced the results (:func:`instab._shared.provenance.record`), stored in
        summary.json as ``provenance`` and shown at the end of the page.
    gallery_limit
        At most this many unstable images in the gallery (all are in per_image.csv).
    """
    if isinstance(gallery_limit, bool) or not isinstance(gallery_limit, int) or gallery_limit < 0:
        raise ValueError(f"gallery_limit: expected a non-negative int, got {gallery_limit!r}")
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    a = analysis(scored)
    report = Report(out, summary(scored, a))
    n_unstable = int(a.images.unstable.sum())
    report.summary["gallery"] = {"unstable_images": n_unstable, "shown": min(n_unstable, gallery_limit)}
    if provenance is not None:
        report.summary["provenance"] = provenance
    known = bool(class_names) and any(class_names or [])

    def label(c: int) -> str:
        return class_names[c] if class_names and 0 <= c < len(class_names) and class_names[c] else str(c)

    report.tables["summary"] = write_json(out / "summary.json", report.summary)
    write_tables(report, a, label, scored.errors, known)
    write_figures(report, a, label)
    report.html.write_text(page_html(title, a, label, report.summary, report.figures, report.tables, gallery_limit),
                           encoding="utf-8")
    return report


def _rate_dict(r: InstabilityResult) -> dict[str, Any]:
    lo, hi = rate_interval(r)
    return {"rate": _f(r.rate), "n_unstable": r.n_unstable, "n_images": r.n_images,
            "n_always_correct": r.n_always_correct, "n_always_wrong": r.n_always_wrong,
            "interval95": [_f(lo), _f(hi)]}


def summary(scored: ScoredSet, a: Analysis) -> dict[str, Any]:
    """The summary.json dict (headline across devices when repeat shots exist)."""
    r1 = a.results[1]
    conf = confidence_groups(r1)
    correct, observed = accuracy_counts(r1)
    lo, hi = interval(correct, observed)
    out: dict[str, Any] = {
        "model": scored.model,
        "model_hash": scored.model_hash,
        "n_images": len(scored.image_ids),
        "environments": a.names,
        "errors": len(scored.errors),
        "headline": "across devices, first shot of each" if a.repeats else "across all environments",
        "instability": {f"top{k}": _rate_dict(r) for k, r in a.headline.items()},
        "accuracy": dict(zip(a.names, _floats(r1.accuracy), strict=True)),
        "accuracy_interval95": {n: [_f(x), _f(y)] for n, x, y in zip(a.names, lo, hi, strict=True)},
        "accuracy_top3": dict(zip(a.names, _floats(a.results[3].accuracy), strict=True)) if 3 in a.results else None,
        "confidence_median": {
            "stable": _median(np.concatenate([conf["stable, correct"], conf["stable, incorrect"]])),
            "unstable": _median(np.concatenate([conf["unstable, correct"], conf["unstable, incorrect"]])),
            **{k: _median(v) for k, v in conf.items()},
        },
    }
    if a.repeats is not None:
        out["instability_all_columns"] = {f"top{k}": _rate_dict(r) for k, r in a.results.items()}
        out["repeats"] = _repeat_summary(a.repeats)
    return out


def _repeat_summary(rep: dict[str, Any]) -> dict[str, Any]:
    within = {d: _f(v[0]) for d, v in rep["within_device"].items()}
    across = {s: _f(v[0]) for s, v in rep["across_devices"].items()}
    return {"within_device": within, "across_devices": across,
            "within_mean": _mean(within.values()), "across_mean": _mean(across.values()),
            "counts": {part: {key: [v[1], v[2]] for key, v in rep[part].items()}
                       for part in ("within_device", "across_devices")}}


def write_tables(report: Report, a: Analysis, label: Callable[[int], str],
                 errors: list[tuple[str, str, int, str]], names_known: bool) -> None:
    """The CSV tables: accuracy, per_image, per_class, pairwise, per_group, repeats, errors."""
    out, r1, pc, groups = report.out_dir, a.results[1], a.per_class, a.groups
    cols: list[list[Any]] = [list(a.names), list(accuracy_counts(r1)[1])]
    header = ["environment", "n_images"]
    for k, r in a.results.items():
        correct, observed = accuracy_counts(r)
        lo, hi = interval(correct, observed)
        cols += [list(r.accuracy), list(lo), list(hi)]
        header += [f"accuracy_top{k}", f"top{k}_lo95", f"top{k}_hi95"]
    # paired test of each environment's top-1 answers against the first environment's, same images
    cols.append([t.p_value if t is not None else "" for t in versus_first(r1)])
    header.append("mcnemar_p_vs_first")
    report.tables["accuracy"] = write_csv(out / "accuracy.csv", header, [list(row) for row in zip(*cols, strict=True)])
    report.tables["per_image"] = write_csv(out / "per_image.csv", *per_image_table(a.images, label, names_known))
    lo, hi = interval(pc.n_unstable, pc.n_images)
    report.tables["per_class"] = write_csv(
        out / "per_class.csv", ["class", "name", "n_images", "n_unstable", "instability", "lo95", "hi95"],
        [[int(c), label(int(c)), int(n), int(u), r, x, y] for c, n, u, r, x, y in
         zip(pc.keys, pc.n_images, pc.n_unstable, pc.rate, lo, hi, strict=True)],
    )
    report.tables["pairwise"] = write_csv(
        out / "pairwise.csv", ["environment", *a.names], [[n, *row] for n, row in zip(a.names, a.pairwise, strict=True)]
    )
    if groups is not None:
        lo, hi = interval(groups.n_unstable, groups.n_images)
        report.tables["per_group"] = write_csv(
            out / "per_group.csv", ["group", "n_images", "n_unstable", "instability", "lo95", "hi95"],
            [[int(g), int(n), int(u), r, x, y] for g, n, u, r, x, y in
             zip(groups.keys, groups.n_images, groups.n_unstable, groups.rate, lo, hi, strict=True)],
        )
    if a.repeats is not None:
        rows = [[part.split("_")[0], key, v[0], v[1], v[2], *interval(v[1], v[2])]
                for part in ("within_device", "across_devices") for key, v in a.repeats[part].items()]
        report.tables["repeats"] = write_csv(
            out / "repeats.csv", ["comparison", "device_or_shot", "instability", "n_unstable", "n_images", "lo95",
                                  "hi95"], rows)
    if errors:
        report.tables["errors"] = write_csv(out / "errors.csv", ["image_id", "environment", "repeat", "error"],
                                            [list(e) for e in errors])


def _with_ci(values: Any, k: Any, n: Any) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = interval(k, n)
    return np.asarray(values, dtype=float), np.column_stack([np.atleast_1d(lo), np.atleast_1d(hi)])


def write_figures(report: Report, a: Analysis, label: Callable[[int], str]) -> None:
    """The PNG figures (see :data:`FIGURES`) into ``figures/``."""
    folder, r1, pc = report.out_dir / "figures", a.results[1], a.per_class
    correct, observed = accuracy_counts(r1)
    vals, ints = _with_ci(r1.accuracy, correct, observed)
    report.figures["accuracy"] = figs.bar_chart(folder / "accuracy.png", a.names, vals, ints, "accuracy (top-1)",
                                                "Top-1 accuracy per environment")
    if 3 in a.results:
        acc, ins = {}, {}
        for k, r in a.results.items():
            ok = np.isfinite(r.accuracy)
            mean = float(r.accuracy[ok].mean()) if ok.any() else float("nan")
            lo, hi = (float(r.accuracy[ok].min()), float(r.accuracy[ok].max())) if ok.any() else (mean, mean)
            acc[f"top-{k}"] = (mean, lo, hi)
            h = a.headline[k]
            ins[f"top-{k}"] = (float(h.rate), *rate_interval(h))
        report.figures["topk"] = figs.topk_side_by_side(folder / "topk.png", acc, ins)
    if a.repeats is not None:
        def triple(v: tuple[float, int, int]) -> tuple[float, float, float]:
            lo, hi = interval(v[1], v[2])
            return (v[0], float(lo), float(hi))

        report.figures["repeats"] = figs.repeats_chart(
            folder / "repeats.png", {d: triple(v) for d, v in a.repeats["within_device"].items()},
            {s: triple(v) for s, v in a.repeats["across_devices"].items()})
    report.figures["pairwise"] = figs.heatmap(folder / "pairwise.png", a.names, a.pairwise)
    report.figures["confidence"] = figs.confidence_by_outcome(folder / "confidence.png", confidence_groups(r1))
    order = per_class_order(pc)[:30]
    vals, ints = _with_ci(pc.rate[order], pc.n_unstable[order], pc.n_images[order])
    report.figures["per_class"] = figs.bar_chart(
        folder / "per_class.png", [label(int(pc.keys[i])) for i in order], vals, ints, "instability",
        f"Instability per class (top {len(order)} of {len(pc.keys)})", color=figs.RED)
    if a.groups is not None:
        g = a.groups
        vals, ints = _with_ci(g.rate, g.n_unstable, g.n_images)
        report.figures["per_group"] = figs.bar_chart(folder / "per_group.png", [str(x) for x in g.keys], vals, ints,
                                                     "instability", "Instability per group", color=figs.RED)


def _f(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _floats(a: np.ndarray) -> list[float | None]:
    return [_f(float(x)) for x in a]


def _median(v: np.ndarray) -> float | None:
    return float(np.median(v)) if v.size else None


def _mean(values: Any) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def write_json(path: Path, data: Any) -> Path:
    """``data`` as indented JSON."""
    path.write_text(json.dumps(data, indent=2))
    return path


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    """A CSV table; floats rounded to 6 digits, NaN as an empty field."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(["" if isinstance(v, (float, np.floating)) and not np.isfinite(v) else
                        (round(float(v), 6) if isinstance(v, (float, np.floating)) else
                         (int(v) if isinstance(v, np.integer) else v)) for v in row])
    return path


__all__ = [
    "FIGURES",
    "Report",
    "analyse",
    "class_names_from_labels",
    "column_names",
    "summary",
    "write_csv",
    "write_figures",
    "write_json",
    "write_report",
    "write_tables",
]
