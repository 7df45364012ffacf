"""``score_manifest`` with a classifier small enough to predict by hand: the exact rows it stores."""

from __future__ import annotations

import json
import re
import sqlite3

import numpy as np
import onnx
import pytest

from instab.io.store import ResultStore, StoreWriteError
from instab.workflow.score import ScoreInterrupted, score_manifest
from tests._support.colour import COLOURS, NAMES, colour_classifier, expected_top, write_colour_folder


@pytest.fixture
def setup(tmp_path):
    model = write_colour_folder(tmp_path) / "colour.onnx"
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
        meta = store.meta()
    assert meta["manifest"] == str((folder / "manifest.csv").resolve())
    assert meta["manifest_errors"] == summary.manifest.errors
    # Provenance: one record per run, with versions, the model's hash, the command line and times.
    (run,) = meta["runs"]
    assert run["models"] == {"colour": summary.model_hash} and len(summary.model_hash) == 64
    assert run["k"] == 2 and run["scored"] == 3 and run["failed"] == 1 and run["manifest"] == meta["manifest"]
    assert {"instab", "onnxruntime", "numpy", "argv", "host", "started", "finished"} <= set(run)
    assert run["started"] <= run["finished"] and run["finished"].endswith("+00:00")


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


def _other_colour_model():
    """The colour model with another bias for "none": other predictions, same name when saved as colour.onnx."""
    proto = colour_classifier()
    for init in proto.graph.initializer:
        if init.name == "b":
            init.CopyFrom(onnx.numpy_helper.from_array(np.array([0, 0, 0, 4.5], np.float32), "b"))
    return proto


def test_a_model_replaced_in_place_is_scored_again(setup):
    folder, model = setup
    manifest = folder / "manifest.csv"
    first = score_manifest(manifest, str(model), folder / "r.db", k=2, class_names=NAMES)
    onnx.save(_other_colour_model(), str(model))  # same file name, other content
    second = score_manifest(manifest, str(model), folder / "r.db", k=2, class_names=NAMES)
    assert (second.scored, second.already_done) == (3, 0) and second.model_hash != first.model_hash
    with ResultStore(folder / "r.db") as store:
        assert store.identities() == sorted([(first.model_hash, "colour"), (second.model_hash, "colour")])
        assert store.load(first.model_hash).ranked[0, 0, 0] == 0  # red
        assert store.load(second.model_hash).ranked[0, 0, 0] == 3  # "none" wins with the larger bias
    # Another file with the same content is the same model: nothing to score.
    (folder / "copy").mkdir()
    onnx.save(_other_colour_model(), str(folder / "copy" / "colour.onnx"))
    third = score_manifest(manifest, str(folder / "copy" / "colour.onnx"), folder / "r.db", k=2, class_names=NAMES)
    assert (third.scored, third.already_done) == (0, 4)


def test_corrected_labels_and_another_k_leave_no_stale_rows(setup):
    folder, model = setup
    manifest = folder / "manifest.csv"
    score_manifest(manifest, str(model), folder / "r.db", k=2, class_names=NAMES)
    # Corrected labels (and a group): stored in place, nothing is scored again.
    manifest.write_text(manifest.read_text().replace("a,orig,a.png,red,0,1", "a,orig,a.png,green;blue,0,5"))
    fixed = score_manifest(manifest, str(model), folder / "r.db", k=2, class_names=NAMES, progress=pytest.fail)
    assert (fixed.scored, fixed.already_done, fixed.relabelled, fixed.rescored) == (0, 4, 1, 0)
    assert "labels or group updated for 1" in fixed.text()
    with ResultStore(folder / "r.db") as store:
        scored = store.load()
    assert scored.labels[0] == (1, 2) and scored.groups[0] == 5
    # A larger k: the rows scored with k=2 are scored again (the failed one is not retried), in place.
    more = score_manifest(manifest, str(model), folder / "r.db", k=3, class_names=NAMES)
    assert (more.scored, more.already_done, more.rescored) == (3, 1, 3)
    assert "3 scored again (other k or image path)" in more.text()
    with ResultStore(folder / "r.db") as store:
        scored = store.load()
        assert {item.k for key, item in store.stored(more.model_hash).items() if key[0] != "bad"} == {3}
    assert scored.image_ids == ["a", "b", "c", "bad"] and scored.ranked.shape[2] == 3
    assert scored.ranked[0, 0].tolist() == expected_top(COLOURS["a"], 3)[0]


def test_ctrl_c_keeps_what_was_stored(setup):
    folder, model = setup
    manifest = folder / "manifest.csv"

    def interrupt(line):
        raise KeyboardInterrupt

    with pytest.raises(ScoreInterrupted) as exc:
        score_manifest(manifest, str(model), folder / "r.db", k=2, batch_size=2, class_names=NAMES,
                       progress=interrupt)
    assert isinstance(exc.value, KeyboardInterrupt)
    assert str(exc.value) == (f"2 results of model colour are stored in {folder / 'r.db'} (2 by this run); "
                              "run the same command again to resume")
    again = score_manifest(manifest, str(model), folder / "r.db", k=2, batch_size=2, class_names=NAMES)
    assert (again.scored, again.already_done) == (1, 2)  # c scored; bad failed and was recorded


def _limit_pages(monkeypatch, pages):
    """Make every results store of this test 'full' at ``pages`` pages (a tiny disk)."""
    connect = ResultStore._connect  # noqa: SLF001 -- the test hook: the store's own connection

    def limited(self):
        db = connect(self)
        db.execute(f"PRAGMA max_page_count = {pages}")
        return db

    monkeypatch.setattr(ResultStore, "_connect", limited)


def test_disk_full_keeps_what_was_stored(setup, monkeypatch):
    folder, model = setup
    lines = ["image_id,environment,path,labels,repeat"]
    lines += [f"a{'x' * 400}{i},e,a.png,0,0" for i in range(60)]  # long ids: a few rows fill a page
    (folder / "big.csv").write_text("\n".join(lines) + "\n")
    _limit_pages(monkeypatch, 8)
    with pytest.raises(StoreWriteError, match=r"database or disk is full.*the (\d+) results stored so far are kept"
                                              r".*run the same command again to resume") as exc:
        score_manifest(folder / "big.csv", str(model), folder / "r.db", k=2, batch_size=4, class_names=NAMES)
    kept = int(re.search(r"the (\d+) results stored", str(exc.value)).group(1))
    with sqlite3.connect(folder / "r.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == kept > 0
    monkeypatch.undo()
    rest = score_manifest(folder / "big.csv", str(model), folder / "r.db", k=2, batch_size=4, class_names=NAMES)
    assert (rest.scored, rest.already_done) == (60 - kept, kept)
