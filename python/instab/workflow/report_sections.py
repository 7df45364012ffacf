"""The report page's sections, in reading order: headline, unstable images, accuracy, top-1 vs top-3,
repeat shots, pairwise, confidence, per class, per group, tables, provenance.

Every figure has a caption saying what it shows and how to read it; every rate in
a table carries its 95% Wilson interval in brackets.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from instab.workflow.report_analysis import (
    Analysis,
    accuracy_counts,
    interval,
    per_class_order,
    rate_interval,
    versus_first,
)
from instab.workflow.report_gallery import gallery_html
from instab.workflow.report_html import figure, files_list, page, pct, provenance_block, table, with_interval

#: What each CSV table holds, for the links.
TABLE_NOTES = {
    "summary": "every number of this page as JSON, with the provenance",
    "per_image": "one row per image: labels, top-1 and right/wrong in each environment, unstable flag",
    "accuracy": "accuracy per environment at top-1 (and top-3) with 95% intervals",
    "pairwise": "instability between each pair of environments",
    "per_class": "instability per class (each image's first label) with 95% intervals",
    "per_group": "instability per group with 95% intervals",
    "repeats": "instability within each device's repeat shots and across devices",
    "errors": "items that could not be scored, and why",
}

SectionList = list[tuple[str, str, str]]


def _intro(a: Analysis, s: Mapping[str, Any]) -> str:
    h1 = a.headline[1]
    across = " (across devices: the first shot of each environment)" if a.repeats else ""
    rows = []
    for k, r in a.headline.items():
        rows.append([f"top-{k}", with_interval(r.rate, rate_interval(r)), f"{r.n_unstable} of {r.n_images}",
                     r.n_always_correct, r.n_always_wrong])
    if a.repeats:
        for k, r in a.results.items():
            rows.append([f"top-{k}, every shot as its own environment", with_interval(r.rate, rate_interval(r)),
                         f"{r.n_unstable} of {r.n_images}", r.n_always_correct, r.n_always_wrong])
    model = html.escape(str(s["model"]))
    digest = f' <span class="note">(SHA-256 {html.escape(str(s["model_hash"])[:16])}…)</span>' \
        if s.get("model_hash") and s["model_hash"] != s["model"] else ""
    n_err = s["errors"]
    errors = (f', <a href="errors.csv">{n_err} {"item" if n_err == 1 else "items"} could not be scored</a>'
              if n_err else "")
    return (f"<p>Model <code>{model}</code>{digest}: {s['n_images']} images in {len(a.names)} environments"
            f"{errors}.</p>"
            f'<p class="headline">Instability (top-1){across}: <b>{pct(h1.rate)}</b> '
            f"[95% interval {pct(rate_interval(h1)[0])}–{pct(rate_interval(h1)[1])}]: {h1.n_unstable} of "
            f"{h1.n_images} images change between right and wrong.</p>"
            + table(["", "instability [95% interval]", "unstable images", "always right", "always wrong"], rows))


def _gallery(a: Analysis, label: Callable[[int], str], limit: int) -> str:
    return ('<p class="note">Each unstable image as each environment produced it, with the top-1 class, its '
            "confidence and whether it is right (green border: right, red: wrong). Images where most "
            "environments disagree come first. All images, stable ones included, are in "
            '<a href="per_image.csv">per_image.csv</a>.</p>' + gallery_html(a.images, label, limit))


def _accuracy(a: Analysis, figures: Mapping[str, Path]) -> str:
    rows = []
    r1 = a.results[1]
    cols = {k: (accuracy_counts(r), r) for k, r in a.results.items()}
    tests = versus_first(r1)
    for j, name in enumerate(a.names):
        row: list[Any] = [html.escape(name), int(cols[1][0][1][j])]
        for (correct, observed), r in cols.values():
            lo, hi = interval(correct[j], observed[j])
            row.append(with_interval(r.accuracy[j], (float(lo), float(hi))))
        t = tests[j]
        row.append("—" if t is None else f"{t.p_value:.3g} <span class=\"ci\">({t.b} vs {t.c})</span>")
        rows.append(row)
    header = ["environment", "images", *(f"top-{k} accuracy [95% interval]" for k in a.results),
              f"vs {html.escape(a.names[0])}: McNemar p (right only there vs only here)"]
    best = int(np.nanargmax(r1.accuracy)) if np.isfinite(r1.accuracy).any() else None
    spread = (f" It ranges from {pct(np.nanmin(r1.accuracy))} to {pct(np.nanmax(r1.accuracy))} "
              f"(best: {html.escape(a.names[best])})." if best is not None else "")
    return (figure(figures["accuracy"], "accuracy",
                   "Top-1 accuracy in each environment, over the images scored there; whiskers are 95% Wilson "
                   "intervals." + spread + " The table's last column tests each environment against the first on "
                   "the same images (McNemar's paired test; a small p: the accuracies really differ).")
            + table(header, rows))


def _topk(a: Analysis, figures: Mapping[str, Path]) -> str:
    r1, r3 = a.headline[1], a.headline[3]
    return figure(figures["topk"], "topk",
                  "Left: accuracy averaged over environments at top-1 and top-3 (whiskers: the lowest and highest "
                  "environment). Right: instability at top-1 and top-3 (whiskers: 95% intervals); at top-3 an "
                  "answer is right when the label is among the three best classes. Top-3 instability "
                  f"{pct(r3.rate)} vs {pct(r1.rate)} at top-1.")


def _repeats(a: Analysis, figures: Mapping[str, Path]) -> str:
    rep = a.repeats or {}
    rows = []
    for part, what in (("within_device", "within {} (its repeat shots)"),
                       ("across_devices", "across devices, shot {}")):
        for key, (rate, n_u, n) in rep[part].items():
            lo, hi = interval(n_u, n)
            rows.append([what.format(html.escape(str(key))), with_interval(rate, (float(lo), float(hi))),
                         f"{n_u} of {n}"])
    return (figure(figures["repeats"], "repeats",
                    "Instability between repeat shots of the same environment (yellow: the same scene shot again "
                    "on one device) and between devices for the same shot (red). Flips within a device come from "
                    "capture noise alone; the page's headline counts only flips across devices.")
            + table(["comparison", "instability [95% interval]", "unstable images"], rows))


def _pairwise(a: Analysis, figures: Mapping[str, Path]) -> str:
    m = a.pairwise.copy()
    np.fill_diagonal(m, np.nan)
    worst = ""
    if np.isfinite(m).any():
        i, j = np.unravel_index(np.nanargmax(m), m.shape)
        worst = (f" The pair that differs most: {html.escape(a.names[i])} and {html.escape(a.names[j])} "
                 f"({pct(m[i, j])}).")
    caption = ("Each cell: the percentage of images (seen in both) that are right in one environment and wrong "
               "in the other. Darker is more stable; the diagonal is grey; exact values in pairwise.csv." + worst)
    return figure(figures["pairwise"], "pairwise", caption, wide=len(a.names) > 24)


def _confidence(a: Analysis, figures: Mapping[str, Path], s: Mapping[str, Any]) -> str:
    med = s["confidence_median"]
    groups = ("stable, correct", "stable, incorrect", "unstable, correct", "unstable, incorrect")
    rows = [[g, pct(med[g]) if med.get(g) is not None else "n/a"] for g in groups]
    return (figure(figures["confidence"], "confidence",
                   "Top-1 confidence of every prediction, split by whether the image is stable and whether that "
                   "prediction is right (box: quartiles, line: median, n: predictions). Low confidence on unstable "
                   "images, right or wrong, marks answers that a small change of the image can flip.")
            + table(["predictions", "median confidence"], rows))


def _per_class(a: Analysis, figures: Mapping[str, Path], label: Callable[[int], str]) -> str:
    pc = a.per_class
    order = per_class_order(pc)[:15]
    lo, hi = interval(pc.n_unstable[order], pc.n_images[order])
    rows = [[html.escape(label(int(pc.keys[i]))), with_interval(pc.rate[i], (float(lo[t]), float(hi[t]))),
             f"{int(pc.n_unstable[i])} of {int(pc.n_images[i])}"] for t, i in enumerate(order)]
    return (figure(figures["per_class"], "per_class",
                   "Instability of the images of each class (by each image's first label), highest first; whiskers "
                   "are 95% intervals, wide where a class has few images. All classes in per_class.csv.")
            + table(["class", "instability [95% interval]", "unstable images"], rows))


def _per_group(a: Analysis, figures: Mapping[str, Path]) -> str:
    g = a.groups
    if g is None:  # no group column: no section
        return ""
    lo, hi = interval(g.n_unstable, g.n_images)
    rows = [[int(k), with_interval(r, (float(x), float(y))), f"{int(u)} of {int(n)}"]
            for k, r, x, y, u, n in zip(g.keys, g.rate, lo, hi, g.n_unstable, g.n_images, strict=True)]
    return (figure(figures["per_group"], "per_group",
                   "Instability per value of the manifest's group column (e.g. angle or scene); whiskers are 95% "
                   "intervals.")
            + table(["group", "instability [95% interval]", "unstable images"], rows))


def page_html(title: str, a: Analysis, label: Callable[[int], str], s: Mapping[str, Any],
              figures: Mapping[str, Path], tables: Mapping[str, Path], gallery_limit: int) -> str:
    """The whole report page for ``a`` (figures and tables already written)."""
    sections: SectionList = [("unstable", "Unstable images", _gallery(a, label, gallery_limit)),
                             ("accuracy", "Accuracy per environment", _accuracy(a, figures))]
    if "topk" in figures:
        sections.append(("topk", "Top-1 vs top-3", _topk(a, figures)))
    if "repeats" in figures:
        sections.append(("repeats", "Repeat shots: within vs across devices", _repeats(a, figures)))
    sections.append(("pairwise", "Pairwise instability", _pairwise(a, figures)))
    sections.append(("confidence", "Confidence", _confidence(a, figures, s)))
    sections.append(("per-class", "Per class", _per_class(a, figures, label)))
    if "per_group" in figures:
        sections.append(("per-group", "Per group", _per_group(a, figures)))
    files = {p.name: TABLE_NOTES.get(key, "") for key, p in tables.items()}
    sections.append(("tables", "Tables", "<p>Beside this page, for spreadsheets and scripts:</p>" + files_list(files)))
    sections.append(("provenance", "Provenance", provenance_block(s.get("provenance"))))
    return page(title, sections, _intro(a, s))


__all__ = ["TABLE_NOTES", "page_html"]
