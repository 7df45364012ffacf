"""The report's *unstable images*: which images flip, how they looked in each environment, and
``per_image.csv`` (one row per image).

The gallery shows every unstable image (right in at least one environment, wrong in
another) as each environment produced it: a ~128 px thumbnail read from the image
path stored with each result, the top-1 class, its confidence and whether it is
right. Images are sorted by how many environments disagree with the image's
majority outcome, most first, and capped (:data:`GALLERY_LIMIT`) with a note of how
many more there are.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instab.isp.rawfile import decode  # raw files too: their thumbnail is the default development

#: Unstable images shown by default (all of them are in per_image.csv).
GALLERY_LIMIT = 60
#: Longest side of a thumbnail, in pixels.
THUMB_SIZE = 128


@dataclass(frozen=True)
class ImageOutcomes:
    """Top-1 outcome of every image in every column (environment, or environment#repeat)."""

    image_ids: list[str]
    labels: list[tuple[int, ...]]
    columns: list[str]
    top1: np.ndarray  # int [n, e], -1 where not observed
    confidence: np.ndarray  # float [n, e], NaN where not observed
    correct: np.ndarray  # bool [n, e]
    observed: np.ndarray  # bool [n, e]
    unstable: np.ndarray  # bool [n]
    counted: np.ndarray  # bool [n]
    paths: list[list[str | None]]  # [n][e] the image each environment produced (None: unknown)


def disagreement(correct: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """int [n]: how many observed environments disagree with the image's majority outcome (right or wrong)."""
    hit = (correct & observed).sum(axis=1)
    miss = observed.sum(axis=1) - hit
    return np.minimum(hit, miss)


def gallery_order(o: ImageOutcomes) -> list[int]:
    """Indices of the unstable images, most disagreement first, then most distinct top-1 classes, then stored order."""
    dis = disagreement(o.correct, o.observed)
    unstable = [int(i) for i in np.flatnonzero(o.unstable)]
    distinct = {i: len(set(o.top1[i][o.observed[i]].tolist())) for i in unstable}  # only where needed: few
    return sorted(unstable, key=lambda i: (-int(dis[i]), -distinct[i], i))


def thumbnail(path: str | None, size: int = THUMB_SIZE) -> str | None:
    """A ``data:image/jpeg;base64`` URI of the image at ``path`` scaled to ``size`` px, or None when unreadable."""
    if not path:
        return None
    from PIL import Image  # imported here: only thumbnails need Pillow's encoder

    try:
        pixels = decode(path, draft_size=size)
    except (OSError, ValueError):
        return None
    img = Image.fromarray(pixels)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def per_image_table(o: ImageOutcomes, label: Callable[[int], str],
                    names_known: bool) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of ``per_image.csv``: one row per image.

    Columns: ``image_id``, ``labels`` (';'-joined indices), ``label_names``,
    ``counted`` and ``unstable`` (1/0), ``n_environments``, ``n_correct``,
    ``disagreement``; then for each column ``top1[<col>]`` (class index, empty
    where not observed), ``top1_name[<col>]`` (only with class names) and
    ``correct[<col>]`` (1/0, empty where not observed).
    """
    header = ["image_id", "labels", "label_names", "counted", "unstable", "n_environments", "n_correct",
              "disagreement"]
    for c in o.columns:
        header += [f"top1[{c}]"] + ([f"top1_name[{c}]"] if names_known else []) + [f"correct[{c}]"]
    dis = disagreement(o.correct, o.observed)
    rows: list[list[Any]] = []
    for i, image_id in enumerate(o.image_ids):
        seen = o.observed[i]
        row: list[Any] = [image_id, ";".join(map(str, o.labels[i])), ";".join(label(c) for c in o.labels[i]),
                          int(o.counted[i]), int(o.unstable[i]), int(seen.sum()),
                          int((o.correct[i] & seen).sum()), int(dis[i])]
        for j in range(len(o.columns)):
            top = int(o.top1[i, j]) if seen[j] else None
            row.append("" if top is None else top)
            if names_known:
                row.append("" if top is None else label(top))
            row.append("" if top is None else int(o.correct[i, j]))
        rows.append(row)
    return header, rows


def _tile(o: ImageOutcomes, i: int, j: int, label: Callable[[int], str]) -> str:
    col = html.escape(o.columns[j])
    if not o.observed[i, j]:
        return f'<div class="tile missing"><div class="noimg">not scored</div><div class="env">{col}</div></div>'
    path = o.paths[i][j]
    uri = thumbnail(path)
    missing = "no image path stored" if not path else "image file not found"
    pic = (f'<img src="{uri}" alt="{html.escape(o.image_ids[i])} in {col}">' if uri else
           f'<div class="noimg">{missing}</div>')
    ok = bool(o.correct[i, j])
    top = int(o.top1[i, j])
    conf = o.confidence[i, j]
    conf_text = f"{conf:.0%}" if np.isfinite(conf) else "n/a"
    mark = "✓ right" if ok else "✗ wrong"
    return (f'<div class="tile {"ok" if ok else "bad"}" title="{html.escape(o.paths[i][j] or "")}">{pic}'
            f'<div class="env">{col}</div><div class="pred">{html.escape(label(top))}</div>'
            f'<div class="conf">{conf_text} · <span class="mark">{mark}</span></div></div>')


def gallery_html(o: ImageOutcomes, label: Callable[[int], str], limit: int = GALLERY_LIMIT) -> str:
    """The gallery section's body: one card per unstable image (up to ``limit``) and a note of the rest."""
    order = gallery_order(o)
    if not order:
        return '<p class="note">No image is unstable: every image is right everywhere or wrong everywhere.</p>'
    dis = disagreement(o.correct, o.observed)
    cards = []
    for rank, i in enumerate(order[:limit], start=1):
        labels = ", ".join(html.escape(label(c)) for c in o.labels[i])
        seen = int(o.observed[i].sum())
        right = int((o.correct[i] & o.observed[i]).sum())
        tiles = "".join(_tile(o, i, j, label) for j in range(len(o.columns)))
        cards.append(f'<div class="card" data-image-id="{html.escape(o.image_ids[i])}">'
                     f'<h3>{rank}. {html.escape(o.image_ids[i])} <span class="sub">label: {labels} · '
                     f'right in {right} of {seen} environments · {int(dis[i])} disagree</span></h3>'
                     f'<div class="strip">{tiles}</div></div>')
    more = len(order) - limit
    note = (f'<p class="note">Showing {limit} of {len(order)} unstable images; {more} more are listed in '
            f'<a href="per_image.csv">per_image.csv</a> (raise <code>--gallery-limit</code> to show them).</p>'
            if more > 0 else "")
    return "".join(cards) + note


def outcomes(image_ids: list[str], labels: list[tuple[int, ...]], columns: list[str], ranked: np.ndarray,
             top_scores: np.ndarray, r1: Any, paths: Sequence[Sequence[str | None]]) -> ImageOutcomes:
    """:class:`ImageOutcomes` from a scored set's arrays and its top-1 :class:`InstabilityResult` ``r1``."""
    conf = top_scores[..., 0] if top_scores.ndim == 3 else top_scores
    return ImageOutcomes(image_ids, labels, columns, ranked[..., 0], np.asarray(conf, dtype=float),
                         r1.correct & r1.observed, r1.observed, r1.unstable, r1.counted, [list(p) for p in paths])


__all__ = [
    "GALLERY_LIMIT",
    "THUMB_SIZE",
    "ImageOutcomes",
    "disagreement",
    "gallery_html",
    "gallery_order",
    "outcomes",
    "per_image_table",
    "thumbnail",
]
