"""The report's figures (matplotlib, PNG files): bars with 95% intervals, the pairwise heat map,
confidence by stability and correctness (the study's Figure 4), top-1 vs top-3 (Figure 9) and
repeat shots within vs across devices (Figure 3(d)).

Every function takes plain numbers and a path, draws one figure and returns the path.
matplotlib is imported inside the functions that draw: it is heavy and only reports need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Colours (Paul Tol's bright scheme): readable in colour-blind vision and in grey print.
BLUE, RED, GREEN, YELLOW, GREY = "#4477aa", "#ee6677", "#228833", "#ccbb44", "#bbbbbb"

#: Longest label drawn on an axis; longer ones end in an ellipsis (the CSV tables have them whole).
MAX_LABEL = 28


def short(label: str, limit: int = MAX_LABEL) -> str:
    """``label`` cut to ``limit`` characters with an ellipsis."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _figure(width: float = 7.0, height: float = 3.6, ncols: int = 1) -> tuple[Any, Any]:
    import matplotlib  # imported here: heavy, only reports draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display needed

    return plt.subplots(1, ncols, figsize=(width, height), dpi=100)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt  # imported here: heavy, only reports draw

    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight", pad_inches=0.1)  # long tick labels are never cut off
    plt.close(fig)
    return path


def _percent_axis(ax: Any, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter  # imported here: heavy, only reports draw

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0, decimals=0))


def _errors(values: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """[2, n] distances below and above each value for ``errorbar``/``bar(yerr=)`` (0 where unknown)."""
    lo = np.nan_to_num(values - intervals[:, 0], nan=0.0)
    hi = np.nan_to_num(intervals[:, 1] - values, nan=0.0)
    return np.clip(np.vstack([lo, hi]), 0, None)


def bar_chart(path: Path, labels: Sequence[str], values: Any, intervals: Any, ylabel: str, title: str,
              color: str = BLUE) -> Path:
    """Bars in percent with 95% interval whiskers, one per label (rotated labels when there are many)."""
    vals = np.asarray(values, dtype=float)
    ints = np.asarray(intervals, dtype=float).reshape(len(vals), 2)
    n = len(labels)
    fig, ax = _figure(min(14.0, max(5.0, 0.32 * n + 2.5)), 3.8)
    x = np.arange(n)
    ax.bar(x, np.nan_to_num(vals), yerr=_errors(vals, ints), color=color, ecolor="#333333", capsize=2 if n < 40 else 0)
    ax.set_xticks(x)
    rotate = n > 4 or max((len(s) for s in labels), default=0) > 12
    ax.set_xticklabels([short(s) for s in labels], rotation=60 if rotate else 0, ha="right" if rotate else "center",
                       fontsize=8 if n > 20 else 9, rotation_mode="anchor" if rotate else "default")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    top = float(np.nanmax(ints[:, 1], initial=0.0)) if np.isfinite(ints).any() else float(np.nanmax(vals, initial=0))
    ax.set_ylim(0, min(1.0, max(0.05, top * 1.1)) if "accuracy" not in ylabel else 1.0)
    _percent_axis(ax)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _text_colour(rgba: Sequence[float]) -> str:
    """Black on light cells, white on dark ones (relative luminance, WCAG)."""
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(float(c)) for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "white"


def heatmap(path: Path, names: Sequence[str], matrix: np.ndarray) -> Path:
    """Pairwise instability in percent, readable from 2 to ~40 environments.

    The figure grows with the count up to a page's width, then the cells shrink;
    tick and cell fonts follow the cell size, cell text is black or white by the
    cell's luminance, and the colour bar is labelled in percent.
    """
    import matplotlib.pyplot as plt  # imported here: heavy, only reports draw

    n = len(names)
    side = min(12.5, 2.5 + 0.55 * n)  # inches of the matrix and its labels
    cell_pt = (side - 2.5) / max(n, 1) * 72 * 0.85
    label_len = max((len(short(s)) for s in names), default=1)
    tick_font = float(np.clip(cell_pt * 0.55, 6.5, 10))
    fig, ax = _figure(side + 1.5 + label_len * tick_font / 144, side + label_len * tick_font / 144)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#e8e8e8")  # the diagonal and unseen pairs: light grey
    off = np.array(matrix, dtype=float)
    np.fill_diagonal(off, np.nan)
    shown = np.nan_to_num(off, nan=0.0)
    vmax = max(float(np.nanmax(off, initial=0.0)) if np.isfinite(off).any() else 0.0, 0.01)
    im = ax.imshow(np.ma.masked_invalid(off), cmap=cmap, vmin=0, vmax=vmax)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels([short(s) for s in names], rotation=60, ha="right", rotation_mode="anchor", fontsize=tick_font)
    ax.set_yticklabels([short(s) for s in names], fontsize=tick_font)
    cell_font = float(np.clip(cell_pt * 0.4, 5.5, 10))
    decimals = 1 if n <= 12 else 0  # fewer digits where the cells are small; the CSV has them all
    for a in range(n):
        for b in range(n):
            if np.isfinite(off[a, b]):
                colour = _text_colour(cmap(im.norm(shown[a, b])))
                ax.text(b, a, f"{100 * off[a, b]:.{decimals}f}", ha="center", va="center", color=colour,
                        fontsize=cell_font)
    ax.set_title("Pairwise instability (%)")
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    from matplotlib.ticker import PercentFormatter  # imported here: heavy, only reports draw

    bar.ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0 if vmax >= 0.05 else 1))
    bar.set_label("instability between the two environments (%)")
    return _save(fig, path)


def confidence_by_outcome(path: Path, groups: dict[str, np.ndarray]) -> Path:
    """The study's Figure 4: top-1 confidence of stable/unstable x correct/incorrect predictions (box plots)."""
    fig, ax = _figure(7.0, 3.8)
    names = list(groups)
    data = [np.clip(groups[k], 0, 1) for k in names]
    present = [i for i, d in enumerate(data) if d.size]
    colours = [GREEN, RED, BLUE, YELLOW]
    if present:
        box = ax.boxplot([data[i] for i in present], positions=[i + 1 for i in present], widths=0.55,
                         patch_artist=True, showfliers=True, flierprops={"markersize": 2, "alpha": 0.4})
        for patch, i in zip(box["boxes"], present, strict=True):
            patch.set_facecolor(colours[i % len(colours)])
            patch.set_alpha(0.75)
    ax.set_xticks(range(1, len(names) + 1))
    ax.set_xticklabels([f"{k}\n(n={groups[k].size})" for k in names], fontsize=9)
    ax.set_xlim(0.4, len(names) + 0.6)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("top-1 confidence")
    ax.set_title("Confidence by stability and correctness")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def topk_side_by_side(path: Path, accuracy: dict[str, tuple[float, float, float]],
                      instability: dict[str, tuple[float, float, float]]) -> Path:
    """The study's Figure 9: accuracy and instability at top-1 and top-3, each (value, lo, hi)."""
    fig, axes = _figure(8.0, 3.6, ncols=2)
    for ax, (what, data), colour in zip(axes, (("accuracy (mean over environments)", accuracy),
                                               ("instability", instability)), (BLUE, RED), strict=True):
        keys = list(data)
        vals = np.array([data[k][0] for k in keys], dtype=float)
        ints = np.array([data[k][1:] for k in keys], dtype=float)
        ax.bar(range(len(keys)), np.nan_to_num(vals), yerr=_errors(vals, ints), color=colour, capsize=4, width=0.6)
        for i, v in enumerate(vals):
            if np.isfinite(v):  # beside the whisker, which runs up the bar's middle
                ax.text(i + 0.16, max(v / 2, 0.02), f"{v:.1%}", ha="center", va="center", fontsize=9,
                        color="white" if v > 0.08 else "black", fontweight="bold")
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys)
        ax.set_ylim(0, 1.0 if what.startswith("accuracy") else min(1.0, max(0.05, float(np.nanmax(ints)) * 1.15)))
        ax.set_title(what)
        _percent_axis(ax)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def repeats_chart(path: Path, within: dict[str, tuple[float, float, float]],
                  across: dict[str, tuple[float, float, float]]) -> Path:
    """The study's Figure 3(d): instability within each device's repeat shots vs across devices."""
    labels = [f"within {k}" for k in within] + [f"across devices, shot {k}" for k in across]
    values = [v for v, _, _ in within.values()] + [v for v, _, _ in across.values()]
    ints = [(lo, hi) for _, lo, hi in within.values()] + [(lo, hi) for _, lo, hi in across.values()]
    vals = np.asarray(values, dtype=float)
    intervals = np.asarray(ints, dtype=float).reshape(len(vals), 2)
    n = len(labels)
    fig, ax = _figure(min(14.0, max(5.5, 0.4 * n + 3)), 3.8)
    colours = [YELLOW] * len(within) + [RED] * len(across)
    ax.bar(range(n), np.nan_to_num(vals), yerr=_errors(vals, intervals), color=colours, capsize=3)
    ax.set_xticks(range(n))
    ax.set_xticklabels([short(s, 36) for s in labels], rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center",
                       rotation_mode="anchor" if n > 3 else "default", fontsize=8 if n > 12 else 9)
    ax.set_ylabel("instability")
    top = float(np.nanmax(intervals[:, 1], initial=0.0)) if np.isfinite(intervals).any() else 0.0
    ax.set_ylim(0, min(1.0, max(0.05, top * 1.35)))  # room for the legend
    from matplotlib.patches import Patch  # imported here: heavy, only reports draw

    ax.legend(handles=[Patch(color=YELLOW, label="within a device (its repeat shots)"),
                       Patch(color=RED, label="across devices (one shot each)")], fontsize=8, loc="upper left")
    ax.set_title("Repeat shots vs devices")
    _percent_axis(ax)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


__all__ = [
    "BLUE",
    "GREEN",
    "GREY",
    "MAX_LABEL",
    "RED",
    "YELLOW",
    "bar_chart",
    "confidence_by_outcome",
    "heatmap",
    "repeats_chart",
    "short",
    "topk_side_by_side",
]
