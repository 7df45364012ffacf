"""``score_manifest`` with a classifier small enough to predict by hand: the exact rows it stores."""

from __future__ import annotations

import json
import re
import sqlite3

import numpy as np
import onnx
import pytest
from PIL import Image

from instab.io.store import ResultStore
from instab.workflow.score import score_manifest
from tests._support.colour import NAMES, colour_classifier, expected_top

COLOURS = {"a": (255, 64, 0), "b": (0, 255, 64), "c": (64, 0, 255)}


@pytest.fixture
def setup(tmp_path):
    model = tmp_path / "colour.onnx"
    onnx.save(colour_classifier(), str(model))
    for name, colour in COLOURS.items():
        Image.fromarray(np.full((20, 16, 3), colour, np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG truncated")
    (tmp_path / "manifest.csv").write_text(
        "image_id,environment,path,labels,repeat,group\n"
        "a,orig,a.png,red,0,1\n"
        "b,orig,b.png,green;none,0,\n"
        "c,orig,c.png,2,1,2\n"
        "bad,orig,bad.png,0,0,\n"  # exists, cannot be decoded: stored with its error
        "gone,orig,gone.png,0,0,\n"  # rejected: no such file
        "a,other,a.png,7,0,\n"  # rejected: class 7 of a 4-class model
    )
    return tmp_path, model


def test_stored_rows_exactly(setup):
    folder, model = setup
    lines: list[str] = []
    summary = score_manifest(folder / "manifest.csv", str(model), folder / "r.db", k=2, batch_size=2,
                             class_names=NAMES, progress=lines.append)
    assert summary.model == "colour" and summary.scored == 3 and summary.already_done == 0
    assert len(summary.failed) == 1 and summary.failed[0].startswith(f"bad [orig] {folder / 'bad.png'}: ")
    assert summary.manifest.errors == [
        "manifest.csv:6: file 'gone.png' not found",
        "manifest.csv:7: class index 7 out of range (0..3)",
    ]
    assert [re.sub(r" [\d.]+ images/s$", "", line) for line in lines] == ["scored 2/4 (50%)", "scored 4/4 (100%)"]

    with sqlite3.connect(folder / "r.db") as con:
        rows = con.execute("SELECT model, image_id, environment, repeat, path, labels, grp, classes, scores, error "
                           "FROM results ORDER BY rowid").fetchall()
    assert [r[:8] for r in rows] == [
        ("colour", "a", "orig", 0, str(folder / "a.png"), "0", 1, "[0, 3]"),
        ("colour", "b", "orig", 0, str(folder / "b.png"), "1;3", None, "[1, 3]"),
        ("colour", "c", "orig", 1, str(folder / "c.png"), "2", 2, "[2, 3]"),
        ("colour", "bad", "orig", 0, str(folder / "bad.png"), "0", None, None),
    ]
    for (_, image_id, *_rest, classes, scores, error) in rows[:3]:
        want_classes, want_scores = expected_top(COLOURS[image_id], 2)
        assert classes == str(want_classes) and error is None
        np.testing.assert_allclose(json.loads(scores), want_scores, atol=2e-7)  # float32 vs by hand
    assert rows[3][8] is None and rows[3][9]
    with ResultStore(folder / "r.db") as store:
        assert store.meta() == {"manifest": str((folder / "manifest.csv").resolve()),
                                "manifest_errors": summary.manifest.errors}


def test_resume_scores_only_what_is_missing(setup):
    folder, model = setup
    manifest = folder / "manifest.csv"
    first = score_manifest(manifest, str(model), folder / "r.db", k=2, class_names=NAMES)
    again = score_manifest(manifest, str(model), folder / "r.db", k=2, class_names=NAMES, progress=pytest.fail)
    assert (first.scored, first.already_done) == (3, 0)
    assert (again.scored, again.already_done, again.failed) == (0, 4, [])  # failed items are not retried
    # A new row in the manifest is the only one scored on the next run.
    with manifest.open("a") as fh:
        fh.write("a,copy,a.png,0,0,\n")
    third = score_manifest(manifest, str(model), folder / "r.db", k=2, class_names=NAMES)
    assert (third.scored, third.already_done) == (1, 4)
    with ResultStore(folder / "r.db") as store:
        scored = store.load()
    assert scored.columns == [("orig", 0), ("orig", 1), ("copy", 0)]
    np.testing.assert_array_equal(scored.ranked[0, :, 0], [0, -1, 0])
    assert "1 scored now, 4 already in the store, 0 failed" in third.text()
