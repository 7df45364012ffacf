"""Reports: a results store -> a self-contained HTML page with PNG figures, plus JSON and CSV tables.

Figures: accuracy per environment, instability per class and per group,
the pairwise heat map between environments, confidence histograms of stable vs
unstable images, and top-1 vs top-3 instability.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instab.io.store import ScoredSet
from instab.metrics.instability import ConfidenceSplit, GroupStats, InstabilityResult, instability

FIGURES = ("accuracy", "per_class", "per_group", "pairwise", "confidence", "topk")


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


def column_names(scored: ScoredSet) -> list[str]:
    """Column labels: the environment, or ``environment#repeat`` where it was scored several times."""
    repeats: dict[str, set[int]] = {env: set() for env, _ in scored.columns}
    for env, rep in scored.columns:
        repeats[env].add(rep)
    return [env if len(repeats[env]) == 1 else f"{env}#{rep}" for env, rep in scored.columns]


def analyse(scored: ScoredSet) -> dict[int, InstabilityResult]:
    """Instability at top-1 and (when stored) top-3."""
    ks = [1] + ([3] if scored.ranked.shape[2] >= 3 else [])
    return {
        k: instability(scored.ranked, scored.labels, k=k, top_scores=scored.top_scores[..., 0]) for k in ks
    }


@dataclass(frozen=True)
class _Analysis:
    """What the tables and figures show, computed once from the stored results."""

    names: list[str]  # column names (environment, or environment#repeat)
    results: dict[int, InstabilityResult]  # by k
    per_class: GroupStats  # keyed by each image's first label
    groups: GroupStats | None  # keyed by the group column, if any
    pairwise: np.ndarray
    split: ConfidenceSplit  # top-1 confidence of stable vs unstable images


def _analysis(scored: ScoredSet) -> _Analysis:
    results = analyse(scored)
    r1 = results[1]
    first_label = np.array([lab[0] for lab in scored.labels], dtype=np.int64)
    groups = r1.by_group(scored.groups) if scored.groups is not None else None
    return _Analysis(column_names(scored), results, r1.by_group(first_label), groups, r1.pairwise(),
                     r1.confidence_split())


def write_report(scored: ScoredSet, out_dir: str | Path, title: str = "instab report",
                 class_names: list[str] | None = None, provenance: dict[str, Any] | None = None) -> Report:
    """Write report.html, figures/*.png, summary.json and CSV tables into ``out_dir``.

    Parameters
    ----------
    scored
        One model's stored results (:meth:`instab.io.store.ResultStore.load`).
    out_dir
        The output folder (created).
    title
        The page's title.
    class_names
        Names for the per-class table and figure, indexed by class (default: the indices).
    provenance
        What produced the results (:func:`instab._shared.provenance.record`), stored in
        summary.json as ``provenance``.
    """
    import matplotlib  # imported here: matplotlib is heavy and only reports need it

    matplotlib.use("Agg")
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    a = _analysis(scored)
    report = Report(out, _summary(scored, a))
    if provenance is not None:
        report.summary["provenance"] = provenance

    def label(c: int) -> str:
        return class_names[c] if class_names and 0 <= c < len(class_names) else str(c)

    report.tables["summary"] = _write_json(out / "summary.json", report.summary)
    _write_tables(report, a, label, scored.errors)
    _write_figures(report, a, label)
    _write_html(report, title, a.names, a.results[1], a.results)
    return report


def _summary(scored: ScoredSet, a: _Analysis) -> dict[str, Any]:
    r1, results = a.results[1], a.results
    summary: dict[str, Any] = {
        "model": scored.model,
        "model_hash": scored.model_hash,
        "n_images": len(scored.image_ids),
        "environments": a.names,
        "errors": len(scored.errors),
        "instability": {f"top{k}": _rate_dict(r) for k, r in results.items()},
        "accuracy": dict(zip(a.names, _floats(r1.accuracy), strict=True)),
        "accuracy_top3": dict(zip(a.names, _floats(results[3].accuracy), strict=True)) if 3 in results else None,
        "confidence_median": {
            "stable": float(np.median(a.split.stable)) if a.split.stable.size else None,
            "unstable": float(np.median(a.split.unstable)) if a.split.unstable.size else None,
        },
    }
    repeat_info = _repeat_analysis(scored, r1)
    if repeat_info is not None:
        summary["repeats"] = repeat_info
    return summary


def _write_tables(report: Report, a: _Analysis, label: Callable[[int], str],
                  errors: list[tuple[str, str, int, str]]) -> None:
    out, r1, results, pc, groups = report.out_dir, a.results[1], a.results, a.per_class, a.groups
    top3 = results[3].accuracy if 3 in results else None
    accuracy = [[n, acc, top3[j] if top3 is not None else ""]
                for j, (n, acc) in enumerate(zip(a.names, r1.accuracy, strict=True))]
    report.tables["accuracy"] = _write_csv(
        out / "accuracy.csv", ["environment", "accuracy_top1", "accuracy_top3"], accuracy
    )
    report.tables["per_class"] = _write_csv(
        out / "per_class.csv", ["class", "name", "n_images", "n_unstable", "instability"],
        [[int(c), label(int(c)), int(n), int(u), r] for c, n, u, r in
         zip(pc.keys, pc.n_images, pc.n_unstable, pc.rate, strict=True)],
    )
    report.tables["pairwise"] = _write_csv(
        out / "pairwise.csv", ["environment", *a.names], [[n, *row] for n, row in zip(a.names, a.pairwise, strict=True)]
    )
    if groups is not None:
        report.tables["per_group"] = _write_csv(
            out / "per_group.csv", ["group", "n_images", "n_unstable", "instability"],
            [[int(g), int(n), int(u), r] for g, n, u, r in
             zip(groups.keys, groups.n_images, groups.n_unstable, groups.rate, strict=True)],
        )
    if errors:
        report.tables["errors"] = _write_csv(out / "errors.csv", ["image_id", "environment", "repeat", "error"],
                                             [list(e) for e in errors])


def _write_figures(report: Report, a: _Analysis, label: Callable[[int], str]) -> None:
    figs, r1, results, pc = report.out_dir / "figures", a.results[1], a.results, a.per_class
    report.figures["accuracy"] = _bar(figs / "accuracy.png", a.names, r1.accuracy, "accuracy (top-1)",
                                      "Accuracy per environment")
    order = np.argsort(-np.nan_to_num(pc.rate, nan=-1), kind="stable")[:30]
    report.figures["per_class"] = _bar(
        figs / "per_class.png", [label(int(pc.keys[i])) for i in order], pc.rate[order],
        "instability", f"Instability per class (top {len(order)} of {len(pc.keys)})",
    )
    if a.groups is not None:
        report.figures["per_group"] = _bar(figs / "per_group.png", [str(g) for g in a.groups.keys], a.groups.rate,
                                           "instability", "Instability per group")
    else:
        report.figures["per_group"] = _bar(
            figs / "per_group.png", ["all images"], [r1.rate], "instability",
            "Instability per group (no group column: one group)",
        )
    report.figures["pairwise"] = _heatmap(figs / "pairwise.png", a.names, a.pairwise)
    report.figures["confidence"] = _histograms(figs / "confidence.png", a.split.stable, a.split.unstable)
    report.figures["topk"] = _bar(figs / "topk.png", [f"top-{k}" for k in results], [r.rate for r in results.values()],
                                  "instability", "Instability, top-1 vs top-3")


def _rate_dict(r: InstabilityResult) -> dict[str, Any]:
    return {"rate": _f(r.rate), "n_unstable": r.n_unstable, "n_images": r.n_images,
            "n_always_correct": r.n_always_correct, "n_always_wrong": r.n_always_wrong}


def _repeat_analysis(scored: ScoredSet, r: InstabilityResult) -> dict[str, Any] | None:
    reps = [rep for _, rep in scored.columns]
    if len(set(reps)) < 2:
        return None
    envs = list(dict.fromkeys(env for env, _ in scored.columns))
    device = [envs.index(env) for env, _ in scored.columns]
    ra = r.repeat_analysis(device=device, repeat=reps)
    return {"within_device": {envs[d]: _f(v) for d, v in ra.within.items()},
            "across_devices": {str(k): _f(v) for k, v in ra.across.items()},
            "within_mean": _f(ra.within_mean), "across_mean": _f(ra.across_mean)}


def _pct(x: float) -> str:
    return f"{x:.2%}" if np.isfinite(x) else "n/a"


def _f(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _floats(a: np.ndarray) -> list[float | None]:
    return [_f(float(x)) for x in a]


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(["" if isinstance(v, float) and not np.isfinite(v) else
                        (round(v, 6) if isinstance(v, (float, np.floating)) else v) for v in row])
    return path


def _figure(width: float = 7.0, height: float = 3.6):
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _bar(path: Path, labels: list[str], values: Any, ylabel: str, title: str) -> Path:
    fig, ax = _figure(max(5.0, 0.35 * len(labels) + 2))
    vals = np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)
    ax.bar(range(len(labels)), vals, color="#4477aa")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center",
                       fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(0, max(1.0, float(vals.max(initial=0)) * 1.1) if ylabel.startswith("accuracy") else None)
    return _save(fig, path)


def _heatmap(path: Path, names: list[str], matrix: np.ndarray) -> Path:
    fig, ax = _figure(1.0 + 0.6 * len(names) + 2, 1.0 + 0.6 * len(names) + 1)
    im = ax.imshow(np.nan_to_num(matrix, nan=0.0), cmap="viridis")
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    for a in range(len(names)):
        for b in range(len(names)):
            if np.isfinite(matrix[a, b]):
                ax.text(b, a, f"{matrix[a, b]:.1%}", ha="center", va="center", color="w", fontsize=7)
    ax.set_title("Pairwise instability between environments")
    fig.colorbar(im, ax=ax)
    return _save(fig, path)


def _histograms(path: Path, stable: np.ndarray, unstable: np.ndarray) -> Path:
    fig, ax = _figure()
    bins = np.linspace(0, 1, 21)
    for values, name in ((stable, "stable"), (unstable, "unstable")):
        if values.size:  # an empty sample has no density to draw
            ax.hist(np.clip(values, 0, 1), bins=bins, alpha=0.6, density=True, label=f"{name} (n={values.size})")
    ax.set_xlabel("top-1 confidence")
    ax.set_ylabel("density")
    ax.set_title("Confidence of stable vs unstable images")
    if stable.size or unstable.size:
        ax.legend()
    return _save(fig, path)


def _write_html(report: Report, title: str, names: list[str], r1: InstabilityResult,
                results: dict[int, InstabilityResult]) -> None:
    def img(key: str) -> str:
        data = base64.b64encode(report.figures[key].read_bytes()).decode()
        return f'<figure><img alt="{key}" src="data:image/png;base64,{data}"></figure>'

    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{a:.3f}</td></tr>"
        for n, a in zip(names, np.nan_to_num(r1.accuracy), strict=True)
    )
    rates = "".join(
        f"<li>top-{k}: <b>{_pct(r.rate)}</b> of {r.n_images} images unstable ({r.n_unstable})</li>"
        for k, r in results.items()
    )
    s = report.summary
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Model <code>{html.escape(str(s['model']))}</code>, {s['n_images']} images, {len(names)} environments,
{s['errors']} failed items.</p><ul>{rates}</ul>
<h2>Accuracy per environment</h2><table><tr><th>environment</th><th>top-1 accuracy</th></tr>{rows}</table>
{img('accuracy')}<h2>Top-1 vs top-3</h2>{img('topk')}
<h2>Pairwise instability</h2>{img('pairwise')}
<h2>Instability per class</h2>{img('per_class')}<h2>Instability per group</h2>{img('per_group')}
<h2>Confidence</h2>{img('confidence')}
<p>Tables: {', '.join(html.escape(p.name) for p in report.tables.values())}.</p></body></html>"""
    report.html.write_text(body, encoding="utf-8")

__all__ = [
    "FIGURES",
    "Report",
    "analyse",
    "column_names",
    "write_report",
]
