"""``write_report`` from a store of known predictions: the numbers in summary.json and the CSV tables."""

from __future__ import annotations

import csv
import json
import re

import pytest

from instab.io.store import ResultRow, ResultStore
from instab.workflow.report import FIGURES, class_names_from_labels, write_report

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


def _gallery(page: str) -> list[str]:
    """The image ids of the gallery's cards, in page order."""
    return re.findall(r'<div class="card" data-image-id="([^"]+)"', page)


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
    assert summary == json.loads(json.dumps(report.summary))
    assert summary["model"] == "m" and summary["environments"] == ["A", "B"]
    assert summary["n_images"] == 11 and summary["errors"] == 1  # the broken image is listed, never counted
    assert summary["headline"] == "across all environments"
    intervals = {k: v.pop("interval95") for k, v in summary["instability"].items()}  # Wilson, 3/10 and 2/10
    assert intervals == {"top1": pytest.approx([0.107791, 0.603222], abs=1e-6),
                         "top3": pytest.approx([0.056682, 0.509838], abs=1e-6)}
    assert summary["instability"] == {
        "top1": {"rate": 0.3, "n_unstable": 3, "n_images": 10, "n_always_correct": 5, "n_always_wrong": 2},
        "top3": {"rate": 0.2, "n_unstable": 2, "n_images": 10, "n_always_correct": 6, "n_always_wrong": 2},
    }
    assert summary["gallery"] == {"unstable_images": 3, "shown": 3}
    assert summary["accuracy"] == {"A": 0.7, "B": 0.6}
    assert summary["accuracy_top3"] == {"A": 0.7, "B": 0.7}
    assert summary["confidence_median"] == pytest.approx({
        "stable": STABLE, "unstable": UNSTABLE, "stable, correct": STABLE, "stable, incorrect": STABLE,
        "unstable, correct": UNSTABLE, "unstable, incorrect": UNSTABLE})
    assert "repeats" not in summary and "instability_all_columns" not in summary

    accuracy = _csv(out / "accuracy.csv")
    assert accuracy[0] == ["environment", "n_images", "accuracy_top1", "top1_lo95", "top1_hi95", "accuracy_top3",
                           "top3_lo95", "top3_hi95", "mcnemar_p_vs_first"]
    assert [row[:3] + [row[5]] for row in accuracy[1:]] == [["A", "10", "0.7", "0.7"], ["B", "10", "0.6", "0.7"]]
    # B vs A on the same 10 images: i7, i8 right only in A, i9 only in B: exact p = 2 * P[Bin(3, 1/2) <= 1] = 1
    assert [row[8] for row in accuracy[1:]] == ["", "1.0"]
    assert [float(x) for x in accuracy[1][3:5]] == pytest.approx([0.396778, 0.892209], abs=1e-6)  # Wilson 7/10
    assert _csv(out / "pairwise.csv") == [["environment", "A", "B"], ["A", "0.0", "0.3"], ["B", "0.3", "0.0"]]
    assert [row[:4] for row in _csv(out / "per_group.csv")] == [["group", "n_images", "n_unstable", "instability"],
                                                                ["0", "5", "0", "0.0"], ["1", "5", "3", "0.6"]]
    per_class = {row[0]: row[1:5] for row in _csv(out / "per_class.csv")[1:]}
    assert per_class["7"] == ["class7", "1", "1", "1.0"] and per_class["0"] == ["class0", "1", "0", "0.0"]
    assert sum(int(v[2]) for v in per_class.values()) == 3
    assert _csv(out / "errors.csv") == [["image_id", "environment", "repeat", "error"],
                                        ["broken", "A", "0", "cannot decode"]]
    assert set(report.figures) == set(FIGURES) - {"repeats"}  # no repeat shots
    page = report.html.read_text()
    assert "<title>known</title>" in page and "<b>30.0%</b> [95% interval 10.8%–60.3%]: 3 of 10 images" in page
    assert "20.0% <span class=\"ci\">[5.7–51.0]</span>" in page  # top-3, in the headline table
    assert _gallery(page) == ["i7", "i8", "i9"]  # equal disagreement: stored order
    assert 'href="per_image.csv"' in page and 'href="errors.csv"' in page and "Provenance" in page


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
    report = write_report(scored, tmp_path / "rep")
    summary = report.summary
    assert summary["environments"] == ["D1#0", "D1#1", "D2#0", "D2#1"]
    assert summary["repeats"] == {"within_device": {"D1": 0.5, "D2": 0.25}, "across_devices": {"0": 0.5, "1": 0.25},
                                  "within_mean": 0.375, "across_mean": 0.375,
                                  "counts": {"within_device": {"D1": [2, 4], "D2": [1, 4]},
                                             "across_devices": {"0": [2, 4], "1": [1, 4]}}}
    # The headline is across devices (first shot of each): x2 and x3 flip there; x1 flips only between shots.
    assert summary["headline"] == "across devices, first shot of each"
    assert summary["instability"]["top1"]["n_unstable"] == 2 and summary["instability"]["top1"]["rate"] == 0.5
    assert summary["instability_all_columns"]["top1"]["n_unstable"] == 3 and summary["accuracy_top3"] is None
    assert set(report.figures) == {"accuracy", "repeats", "pairwise", "confidence", "per_class"}
    assert _csv(tmp_path / "rep" / "repeats.csv")[1][:5] == ["within", "D1", "0.5", "2", "4"]
    assert _gallery(report.html.read_text()) == ["x1", "x2", "x3"]
    assert not (tmp_path / "rep" / "per_group.csv").exists() and not (tmp_path / "rep" / "errors.csv").exists()


def test_per_image_csv(scored, tmp_path):
    """One row per image, in stored order: labels, each environment's top-1 and right/wrong, the flags."""
    names = [f"class{c}" for c in range(100)]
    write_report(scored, tmp_path / "rep", class_names=names)
    header = ["image_id", "labels", "label_names", "counted", "unstable", "n_environments", "n_correct",
              "disagreement", "top1[A]", "top1_name[A]", "correct[A]", "top1[B]", "top1_name[B]", "correct[B]"]
    right = [[f"i{i}", str(i), f"class{i}", "1", "0", "2", "2", "0", str(i), f"class{i}", "1", str(i), f"class{i}",
              "1"] for i in range(5)]
    wrong = [[f"i{i}", str(i), f"class{i}", "1", "0", "2", "0", "0", "50", "class50", "0", "50", "class50", "0"]
             for i in (5, 6)]
    assert _csv(tmp_path / "rep" / "per_image.csv") == [
        header, *right, *wrong,
        ["i7", "7", "class7", "1", "1", "2", "1", "1", "7", "class7", "1", "60", "class60", "0"],
        ["i8", "8", "class8", "1", "1", "2", "1", "1", "8", "class8", "1", "20", "class20", "0"],
        ["i9", "9", "class9", "1", "1", "2", "1", "1", "30", "class30", "0", "9", "class9", "1"],
        ["broken", "3", "class3", "0", "0", "0", "0", "0", "", "", "", "", "", ""],
    ]
    # Without class names: no name columns, classes as numbers.
    write_report(scored, tmp_path / "plain")
    rows = _csv(tmp_path / "plain" / "per_image.csv")
    assert rows[0][8:] == ["top1[A]", "correct[A]", "top1[B]", "correct[B]"]
    assert rows[8] == ["i7", "7", "7", "1", "1", "2", "1", "1", "7", "1", "60", "0"]


def test_gallery_order_and_limit(tmp_path):
    """Most disagreement first, then most distinct top-1 classes, then stored order; capped with a note."""
    right = {"b": "1000", "c": "1100", "f": "1110", "g": "1000", "s": "1111"}  # per environment E1..E4
    wrong_class = {"g": [5, 6, 7]}  # g's three wrong answers differ; the others' are all class 5
    rows = []
    for x, pattern in right.items():
        wrong = iter(wrong_class.get(x, [5, 5, 5]))
        for j, ok in enumerate(pattern):
            rows.append(ResultRow("m", x, f"E{j + 1}", 0, "", (1,), None, [1 if ok == "1" else next(wrong)],
                                  [0.5], None))
    with ResultStore(tmp_path / "r.db") as store:
        store.write(rows)
        scored = store.load()
    report = write_report(scored, tmp_path / "rep")
    page = report.html.read_text()
    assert _gallery(page) == ["c", "g", "b", "f"]
    assert "Showing" not in page and "no image path stored" in page  # no image paths given: no thumbnails
    capped = write_report(scored, tmp_path / "capped", gallery_limit=2)
    page = capped.html.read_text()
    assert _gallery(page) == ["c", "g"] and "Showing 2 of 4 unstable images; 2 more" in page
    assert capped.summary["gallery"] == {"unstable_images": 4, "shown": 2}
    assert "per_group" not in capped.figures and not (tmp_path / "capped" / "per_group.csv").exists()
    with pytest.raises(ValueError, match="gallery_limit"):
        write_report(scored, tmp_path / "bad", gallery_limit=-1)


def test_class_names_from_labels(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("file,class_index,name\na.png,2,goldfish\nb.png,0,tench\nc.png,4;5,x;y\nd.png,7,\n")
    assert class_names_from_labels(labels) == ["tench", "", "goldfish", "", "x", "y"]
    (tmp_path / "other.csv").write_text("file,class_index,class_name\na.png,1,cat\n")
    assert class_names_from_labels(tmp_path / "other.csv") == ["", "cat"]
    (tmp_path / "bare.csv").write_text("file,class_index\na.png,1\n")
    with pytest.raises(ValueError, match="name"):
        class_names_from_labels(tmp_path / "bare.csv")


def test_cli_report_options(scored, tmp_path, capsys):
    """``instab report``: class names from --labels, the gallery cap, and one-line usage errors."""
    from instab.cli.main import main

    db = tmp_path / "r.db"
    labels = tmp_path / "labels.csv"
    labels.write_text("file,class_index,name\na.png,7,seven\nb.png,60,sixty\n")
    assert main(["report", str(db), "--out", str(tmp_path / "rep"), "--labels", str(labels),
                 "--gallery-limit", "1"]) == 0
    assert capsys.readouterr().out.startswith("top1: instability 30.00% (3/10)")
    page = (tmp_path / "rep" / "report.html").read_text()
    assert _gallery(page) == ["i7"] and "sixty" in page and "Showing 1 of 3 unstable images" in page
    assert _csv(tmp_path / "rep" / "per_image.csv")[8][8:11] == ["7", "seven", "1"]
    for args, message in ((["--gallery-limit", "-1"], "--gallery-limit"),
                          (["--labels", str(labels), "--class-names", str(labels)], "one source of class names"),
                          (["--labels", str(tmp_path / "none.csv")], "--labels")):
        assert main(["report", str(db), "--out", str(tmp_path / "bad"), *args]) == 2
        assert message in capsys.readouterr().err
