"""The before/after tables of ``instab mitigate``: plain text for the terminal, a short HTML page."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the result imports this module; only the type is needed here
    from instab.studies.mitigate.result import MitigateResult

#: The protocols as the tables name them.
PROTOCOL_TITLES = {
    "two_devices": "the two training devices (the study's protocol)",
    "built_in": "the five built-in devices",
    "held_out": "two held-out phones (never trained on)",
    "all": "every device",
}
_MODEL_TITLES = {"input": "input model", "plain": "plain fine-tune", "stable": "stability fine-tune"}


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def _rows(result: MitigateResult) -> list[tuple[str, dict[str, Any]]]:
    """(title, measures) of every model, float then int8."""
    rows = [(_MODEL_TITLES.get(n, n), r) for n, r in result.rows.items()]
    return rows + [(_MODEL_TITLES.get(n, n) + ", int8", r) for n, r in result.int8_rows.items()]


def _columns(result: MitigateResult) -> list[tuple[str, Any]]:
    """(heading, value of a measures dict) of each table column."""
    cols: list[tuple[str, Any]] = []
    for protocol in PROTOCOL_TITLES:
        for k in (1, 3):
            cols.append((f"instability {protocol} top-{k}",
                         lambda r, p=protocol, k=k: _pct(r["instability"][p][f"top{k}"]["rate"])))
    cols.append(("mean accuracy", lambda r: _pct(sum(r["accuracy"].values()) / len(r["accuracy"]))))
    cols.append(("lowest device accuracy", lambda r: _pct(min(r["accuracy"].values()))))
    cols.append(("retention accuracy", lambda r: _pct(r["retention_accuracy"])))
    return cols


def text_table(result: MitigateResult) -> str:
    """One line per model: two-device and all-device instability (top-1), accuracy, retention."""
    head = f"{'model':<30} {'2-device':>9} {'built-in':>9} {'held-out':>9} {'all':>8} {'accuracy':>9} {'retention':>9}"
    lines = [head]
    for title, r in _rows(result):
        inst = r["instability"]
        acc = sum(r["accuracy"].values()) / len(r["accuracy"])
        lines.append(f"{title:<30} {_pct(inst['two_devices']['top1']['rate']):>9} "
                     f"{_pct(inst['built_in']['top1']['rate']):>9} {_pct(inst['held_out']['top1']['rate']):>9} "
                     f"{_pct(inst['all']['top1']['rate']):>8} {_pct(acc):>9} {_pct(r['retention_accuracy']):>9}")
    s = result.summary()
    if s:
        lines.append(f"two-device instability: {_pct(s['two_devices_reduction_vs_input'])} lower than the input "
                     f"model's, {_pct(s['two_devices_reduction_vs_plain'])} lower than the plain fine-tune's")
    return "\n".join(lines)


def html_page(result: MitigateResult) -> str:
    """A self-contained page: what ran, the headline, the table of every model and protocol, per-device accuracy."""
    meta, cols = result.meta, _columns(result)
    opts = meta["options"]
    table = "".join("<tr><th>" + html.escape(title) + "</th>" + "".join(f"<td>{f(r)}</td>" for _, f in cols)
                    + "</tr>" for title, r in _rows(result))
    devices = list(next(iter(result.rows.values()))["accuracy"])
    acc = "".join("<tr><th>" + html.escape(title) + "</th>" + "".join(
        f"<td>{_pct(r['accuracy'][d])}</td>" for d in devices) + "</tr>" for title, r in _rows(result))
    summary = "".join(f"<li>{html.escape(k.replace('_', ' '))}: {_pct(v) if 'change' not in k else _pp(v)}</li>"
                      for k, v in result.summary().items())
    search = "".join(
        f"<tr><td>{html.escape(r['model'])}</td><td>{'' if r['alpha'] is None else format(r['alpha'], 'g')}</td>"
        f"<td>{_pct(r['instability'])}</td><td>{_pct(r['accuracy'])}</td><td>{_pct(r['retention'])}</td>"
        f"<td>{'' if r.get('allowed', True) else 'forgets too much'}</td></tr>" for r in meta.get("alpha_search", []))
    return (
        "<!doctype html><html lang='en'><meta charset='utf-8'><title>instab mitigate: before and after</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}th{text-align:left}</style>"
        "<h1>Stability fine-tuning: before and after</h1>"
        f"<p>Model {html.escape(str(meta['model']))}; x through {html.escape(meta['views'][0])}, x' through "
        f"{html.escape(meta['views'][1])}; loss {html.escape(opts['loss'])}, noise {html.escape(opts['noise'])}, "
        f"alpha {meta['alpha']}; images {meta['split']} (train / validation / evaluation, split per class), "
        f"{meta['n_retention']} retention images measured ({meta['n_retention_guard']} more guard the choice "
        f"of alpha); seed {opts['seed']}; {meta['timings']['seconds']:.0f} s.</p>"
        f"<h2>Headline</h2><ul>{summary}</ul>"
        "<h2>Instability and accuracy</h2><p>Instability: share of evaluation images right on some devices of the "
        "protocol and wrong on others. Protocols: " + "; ".join(f"<b>{k}</b> = {html.escape(v)}"
                                                               for k, v in PROTOCOL_TITLES.items()) + ".</p>"
        "<table><tr><th>model</th>" + "".join(f"<th>{html.escape(h)}</th>" for h, _ in cols) + "</tr>"
        + table + "</table><h2>Top-1 accuracy per device</h2><table><tr><th>model</th>"
        + "".join(f"<th>{html.escape(d)}</th>" for d in devices) + "</tr>" + acc + "</table>"
        + ("<h2>Alpha, chosen on the validation images</h2><p>Two-device instability and accuracy on the validation "
           "images; retention on the half of the retention images kept for this choice (the table above measures "
           "the other half).</p><table><tr><th>model</th><th>alpha</th><th>instability</th><th>accuracy</th>"
           "<th>retention</th><th></th></tr>" + search + "</table>" if search else "")
        + "</html>"
    )


def _pp(v: float | None) -> str:
    return "" if v is None else f"{100 * v:+.2f} points"


__all__ = ["PROTOCOL_TITLES", "html_page", "text_table"]
