"""The report's HTML: one self-contained page (figures and thumbnails inline, no script, no
external file but the CSV tables beside it), readable offline and printable.

Building blocks only (:func:`figure`, :func:`table`, :func:`provenance_block`,
:func:`page`); :mod:`instab.workflow.report` decides what goes in.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The sentence at the top of every report.
DEFINITION = ("An image is <b>unstable</b> when the model's top-1 answer is right in at least one environment "
              "and wrong in another; <b>instability</b> is the share of images (seen in two or more "
              "environments) that are unstable.")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1180px;margin:0 auto;
padding:0 16px 40px;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:2px solid #4477aa;padding-bottom:.15em}
.definition{background:#eef3fa;border-left:4px solid #4477aa;padding:8px 12px}
.headline{font-size:1.15em}.headline b{font-size:1.25em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figure.wide{overflow-x:auto}figure.wide img{max-width:none}
figcaption{color:#444;font-size:.92em;max-width:900px}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555}.sub{font-weight:normal;color:#555;font-size:.8em}
.card{border:1px solid #ddd;border-radius:6px;margin:10px 0;padding:6px 10px}.card h3{margin:.2em 0 .4em;font-size:1em}
.strip{display:flex;flex-wrap:wrap;gap:6px}
.tile{width:136px;font-size:11px;border:3px solid #ccc;border-radius:4px;padding:2px;overflow:hidden}
.tile img{display:block;width:128px;height:128px;object-fit:contain;background:#f6f6f6;border:0}
.tile.ok{border-color:#228833}.tile.bad{border-color:#ee6677}.tile.missing{border-style:dashed;opacity:.6}
.tile .env{font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tile .pred{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tile.ok .mark{color:#1a6b28}.tile.bad .mark{color:#b8293c}
.noimg{width:128px;height:128px;display:flex;align-items:center;justify-content:center;text-align:center;
background:#f6f6f6;color:#777}
dl.prov{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:.9em}dl.prov dt{font-weight:600}
dl.prov dd{margin:0;word-break:break-all}
ul.files li{margin:.15em 0}
"""


def pct(x: float, decimals: int = 1) -> str:
    """``x`` in percent, or n/a."""
    return f"{100 * x:.{decimals}f}%" if x is not None and np.isfinite(x) else "n/a"


def with_interval(value: float, interval: tuple[float, float], decimals: int = 1) -> str:
    """``30.0% [10.8–60.3]``: a rate and its 95% interval in percent."""
    if value is None or not np.isfinite(value):
        return "n/a"
    lo, hi = interval
    return f"{pct(value, decimals)} <span class=\"ci\">[{100 * lo:.{decimals}f}–{100 * hi:.{decimals}f}]</span>"


def figure(path: Path, alt: str, caption: str, wide: bool = False) -> str:
    """A PNG inline, with its caption (HTML allowed in ``caption``).

    ``wide``: shown at its own size, scrolling sideways where the page is narrower
    (a large heat map stays legible instead of shrinking).
    """
    data = base64.b64encode(Path(path).read_bytes()).decode()
    cls = ' class="wide"' if wide else ""
    return (f'<figure{cls}><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1) -> str:
    """A table; cells are HTML (escape text before), those from column ``numeric_from`` on right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if j >= numeric_from else f"<td>{c}</td>"
                         for j, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _value(v: Any) -> str:
    if isinstance(v, Mapping):
        return ", ".join(f"{html.escape(str(k))}: {html.escape(str(x))}" for k, x in v.items()) or "—"
    if isinstance(v, list):
        return html.escape(" ".join(str(x) for x in v)) or "—"
    return "—" if v is None or v == "" else html.escape(str(v))


_PROVENANCE_FIELDS = (("instab", "instab"), ("onnxruntime", "onnxruntime"), ("numpy", "numpy"), ("python", "Python"),
                      ("models", "model (name: SHA-256)"), ("seeds", "seeds"), ("argv", "command line"),
                      ("started", "started (UTC)"), ("finished", "finished (UTC)"), ("host", "machine"),
                      ("platform", "platform"), ("manifest", "manifest"), ("results", "results store"), ("k", "top-k"))


def provenance_block(record: Mapping[str, Any] | None) -> str:
    """What produced the page: this run's record and those of the scoring runs it read (``scoring_runs``)."""
    if not record:
        return '<p class="note">No provenance recorded.</p>'

    def dl(rec: Mapping[str, Any]) -> str:
        items = [(name, rec[key]) for key, name in _PROVENANCE_FIELDS if key in rec]
        return '<dl class="prov">' + "".join(f"<dt>{name}</dt><dd>{_value(v)}</dd>" for name, v in items) + "</dl>"

    parts = ["<h3>This report</h3>", dl(record)]
    runs = record.get("scoring_runs") or []
    for i, run in enumerate(runs, start=1):
        if isinstance(run, Mapping):
            parts += [f"<h3>Scoring run {i} of {len(runs)}</h3>", dl(run)]
    return "".join(parts)


def files_list(files: Mapping[str, str]) -> str:
    """Links to the tables beside the page (name -> what it holds)."""
    items = "".join(f'<li><a href="{html.escape(name)}">{html.escape(name)}</a>: {what}</li>'
                    for name, what in files.items())
    return f'<ul class="files">{items}</ul>'


def page(title: str, sections: Sequence[tuple[str, str, str]], intro: str) -> str:
    """The whole page: title, the definition, ``intro``, a table of contents and (id, heading, body) sections."""
    toc = " · ".join(f'<a href="#{sid}">{html.escape(head)}</a>' for sid, head, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(head)}</h2>{content}</section>'
                   for sid, head, content in sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=\"definition\">{DEFINITION}</p>{intro}"
            f'<nav class="note">{toc}</nav>{body}</body></html>')


__all__ = [
    "CSS",
    "DEFINITION",
    "figure",
    "files_list",
    "page",
    "pct",
    "provenance_block",
    "table",
    "with_interval",
]
