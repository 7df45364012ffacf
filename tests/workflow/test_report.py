"""``write_report`` from a store of known predictions: the numbers in summary.json and the CSV tables."""

from __future__ import annotations

import csv
import json

import pytest

from instab.io.store import ResultRow, ResultStore
from instab.workflow.report import FIGURES, write_report

STABLE, UNSTABLE = 0.9, 0.4  # top-1 score of the stable and of the unstable images


def _store_rows() -> list[ResultRow]:
    """10 images, label i, environments A and B, top-3 stored.

    i0-i4 right in both; i5, i6 wrong in both; i7, i8 right in A only, i9 right in B
    only: 3 of 10 unstable at top-1. At top-3, i7 is right in both (its label second
    in B): 2 of 10. A broken image has an error in A and nothing in B.
    """
    top3 = {}
    for i in range(5):
        top3[i] = ([i, 40, 41], [i, 40, 41])
    for i in (5, 6):
        top3[i] = ([50, 51, 52], [50, 51, 52])
    top3[7] = ([7, 60, 61], [60, 7, 61])
    top3[8] = ([8, 60, 61], [20, 21, 22])
    top3[9] = ([30, 31, 32], [9, 30, 31])
    rows = []
    for i, (a, b) in top3.items():
        score = UNSTABLE if i >= 7 else STABLE
        for env, classes in (("A", a), ("B", b)):
            rows.append(ResultRow("m", f"i{i}", env, 0, f"/x/i{i}.png", (i,), i // 5, classes,
                                  [score, 0.05, 0.01], None))
    rows.append(ResultRow("m", "broken", "A", 0, "/x/broken.png", (3,), 1, None, None, "cannot decode"))
    return rows


def _csv(path):
    with path.open() as fh:
        return list(csv.reader(fh))


@pytest.fixture
def scored(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        store.write(_store_rows())
        return store.load()


def test_summary_and_tables(scored, tmp_path):
    names = [f"class{c}" for c in range(100)]
    report = write_report(scored, tmp_path / "rep", title="known", class_names=names)
    out = tmp_path / "rep"
    summary = json.loads((out / "summary.json").read_text())
    assert summary == report.summary
    assert summary["model"] == "m" and summary["environments"] == ["A", "B"]
    assert summary["n_images"] == 11 and summary["errors"] == 1  # the broken image is listed, never counted
    assert summary["instability"] == {
        "top1": {"rate": 0.3, "n_unstable": 3, "n_images": 10, "n_always_correct": 5, "n_always_wrong": 2},
        "top3": {"rate": 0.2, "n_unstable": 2, "n_images": 10, "n_always_correct": 6, "n_always_wrong": 2},
    }
    assert summary["accuracy"] == {"A": 0.7, "B": 0.6}
    assert summary["accuracy_top3"] == {"A": 0.7, "B": 0.7}
    assert summary["confidence_median"] == pytest.approx({"stable": STABLE, "unstable": UNSTABLE})
    assert "repeats" not in summary

    assert _csv(out / "accuracy.csv") == [["environment", "accuracy_top1", "accuracy_top3"],
                                          ["A", "0.7", "0.7"], ["B", "0.6", "0.7"]]
    assert _csv(out / "pairwise.csv") == [["environment", "A", "B"], ["A", "0.0", "0.3"], ["B", "0.3", "0.0"]]
    assert _csv(out / "per_group.csv") == [["group", "n_images", "n_unstable", "instability"],
                                           ["0", "5", "0", "0.0"], ["1", "5", "3", "0.6"]]
    per_class = {row[0]: row[1:] for row in _csv(out / "per_class.csv")[1:]}
    assert per_class["7"] == ["class7", "1", "1", "1.0"] and per_class["0"] == ["class0", "1", "0", "0.0"]
    assert sum(int(v[2]) for v in per_class.values()) == 3
    assert _csv(out / "errors.csv") == [["image_id", "environment", "repeat", "error"],
                                        ["broken", "A", "0", "cannot decode"]]
    assert set(report.figures) == set(FIGURES)
    page = report.html.read_text()
    assert "<title>known</title>" in page and "<b>30.00%</b> of 10 images unstable (3)" in page
    assert "<b>20.00%</b> of 10 images unstable (2)" in page


def test_repeat_shots_within_and_across_devices(tmp_path):
    """x0 right everywhere; x1 wrong on D1 shot 1; x2 wrong on D2 shot 0; x3 right on D1 shot 0 only."""
    right = {"x0": {(d, r) for d in ("D1", "D2") for r in (0, 1)},
             "x1": {("D1", 0), ("D2", 0), ("D2", 1)},
             "x2": {("D1", 0), ("D1", 1), ("D2", 1)},
             "x3": {("D1", 0)}}
    rows = [ResultRow("m", x, d, r, "", (1,), None, [1 if (d, r) in ok else 2], [0.5], None)
            for x, ok in right.items() for d in ("D1", "D2") for r in (0, 1)]
    with ResultStore(tmp_path / "r.db") as store:
        store.write(rows)
        scored = store.load()
    summary = write_report(scored, tmp_path / "rep").summary
    assert summary["environments"] == ["D1#0", "D1#1", "D2#0", "D2#1"]
    assert summary["repeats"] == {"within_device": {"D1": 0.5, "D2": 0.25}, "across_devices": {"0": 0.5, "1": 0.25},
                                  "within_mean": 0.375, "across_mean": 0.375}
    assert summary["instability"]["top1"]["n_unstable"] == 3 and summary["accuracy_top3"] is None
    assert not (tmp_path / "rep" / "per_group.csv").exists() and not (tmp_path / "rep" / "errors.csv").exists()
