"""The results store: write, read back as arrays, resume keys, duplicates ignored, several models."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from instab.io.store import SCHEMA_VERSION, ResultRow, ResultStore, StoreBusyError, StoreWriteError


def _row(image_id, env, classes, *, model="m", repeat=0, labels=(1,), group=None, error=None, scores=None,
         model_hash="", k=None):
    if classes is not None and scores is None:
        scores = [0.5 / (i + 1) for i in range(len(classes))]
    return ResultRow(model, image_id, env, repeat, f"/x/{image_id}.png", labels, group, classes, scores, error,
                     model_hash, k)


def test_write_and_load_exact_arrays(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        assert store.write([
            _row("a", "jpeg", [1, 4, 2], labels=(1, 4), group=7, scores=[0.6, 0.25, 0.1]),
            _row("a", "png", [4, 1, 2], labels=(1, 4), group=7),
            _row("b", "jpeg", [0, 3, 2]),
            _row("b", "png", None, error="cannot decode"),
        ]) == 4
        scored = store.load()
    assert scored.model == "m"
    assert scored.image_ids == ["a", "b"] and scored.columns == [("jpeg", 0), ("png", 0)]
    assert scored.environments == ["jpeg", "png"]
    np.testing.assert_array_equal(scored.ranked, [[[1, 4, 2], [4, 1, 2]], [[0, 3, 2], [-1, -1, -1]]])
    np.testing.assert_allclose(scored.top_scores[0, 0], [0.6, 0.25, 0.1], rtol=1e-6)
    np.testing.assert_allclose(scored.top_scores[0, 1], [0.5, 0.25, 0.5 / 3], rtol=1e-6)
    assert np.isnan(scored.top_scores[1, 1]).all()
    assert scored.labels == [(1, 4), (1,)]
    np.testing.assert_array_equal(scored.groups, [7, 0])  # an image without a group reads as 0
    assert scored.errors == [("b", "png", 0, "cannot decode")]


def test_duplicates_are_ignored_and_keys_resume(tmp_path):
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        assert store.write([_row("a", "jpeg", [1]), _row("b", "jpeg", [2])]) == 2
        # The same key again (even with other values) is not written twice and does not overwrite.
        assert store.write([_row("a", "jpeg", [9]), _row("a", "jpeg", [1], repeat=1)]) == 1
        assert store.done_keys("m") == {("a", "jpeg", 0), ("b", "jpeg", 0), ("a", "jpeg", 1)}
        assert store.done_keys("other") == set()
    with ResultStore(path) as store:  # reopened: everything is still there
        assert store.count() == 3 and store.count("m") == 3
        scored = store.load("m")
    assert scored.columns == [("jpeg", 0), ("jpeg", 1)]
    np.testing.assert_array_equal(scored.ranked[:, :, 0], [[1, 1], [2, -1]])
    assert scored.groups is None
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT classes, scores, labels FROM results WHERE image_id = 'a' AND repeat = 0"
                           ).fetchone() == ("[1]", "[0.5]", "1")


def test_several_models_and_meta(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        store.write([_row("a", "jpeg", [1], model="m2"), _row("a", "jpeg", [2], model="m1")])
        store.set_meta("manifest", "/x/manifest.csv")
        store.set_meta("manifest_errors", ["m.csv:3: bad"])
        store.set_meta("manifest", "/y/manifest.csv")  # replaced
        meta = store.meta()
        assert {k: meta[k] for k in ("manifest", "manifest_errors")} == {
            "manifest": "/y/manifest.csv", "manifest_errors": ["m.csv:3: bad"]}
        assert store.models() == ["m1", "m2"]
        assert store.count("m1") == 1 and store.count() == 2
        with pytest.raises(ValueError, match=r"several models \(m1, m2\); name one"):
            store.load()
        with pytest.raises(ValueError, match="'m3' not in the store"):
            store.load("m3")
        assert store.load("m1").ranked[0, 0, 0] == 2


def test_empty_and_broken_stores(tmp_path):
    with ResultStore(tmp_path / "new" / "r.db") as store:  # the folder is created
        with pytest.raises(ValueError, match="holds no results"):
            store.load()
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="not a usable SQLite database"):
        ResultStore(tmp_path / "junk.db")


def _fill(path, rows):
    with ResultStore(path) as store:
        store.write(rows)


def test_models_are_keyed_by_content_hash_not_name(tmp_path):
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        # Two different models that share a name (two files model.onnx, or one replaced in place).
        assert store.write([_row("a", "jpeg", [1], model="model", model_hash="1" * 64, k=1),
                            _row("a", "jpeg", [2], model="model", model_hash="2" * 64, k=1)]) == 2
        assert store.done_keys("1" * 64) == {("a", "jpeg", 0)}
        assert store.identities() == [("1" * 64, "model"), ("2" * 64, "model")]
        with pytest.raises(ValueError, match=r"'model' names 2 different models in the store .*give its hash"):
            store.load("model")
        assert store.load("2" * 64).ranked[0, 0, 0] == 2
        assert store.load("1" * 12).ranked[0, 0, 0] == 1  # a unique prefix of the hash is enough
        assert store.load("2" * 64).model_hash == "2" * 64
        with pytest.raises(ValueError, match=r"several models \(model 111111111111, model 222222222222\)"):
            store.load()
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT model_hash, model, k FROM results ORDER BY rowid").fetchall() == [
            ("1" * 64, "model", 1), ("2" * 64, "model", 1)]


def test_rescore_and_relabel_keep_the_row_order(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        store.write([_row("a", "x", [1], k=1), _row("b", "x", [2], k=1)])
        assert store.write([_row("a", "x", [1, 5], k=2)], replace=True) == 1
        assert store.relabel("m", [(("b", "x", 0), (3, 4), 9)]) == 1
        items = store.stored("m")
        assert items[("a", "x", 0)].k == 2 and items[("b", "x", 0)].labels == (3, 4)
        assert items[("b", "x", 0)].group == 9 and items[("b", "x", 0)].path == "/x/b.png"
        scored = store.load()
    assert scored.image_ids == ["a", "b"]
    assert scored.ranked[:, 0].tolist() == [[1, 5], [2, -1]] and scored.labels == [(1,), (3, 4)]


def test_one_unstorable_row_never_costs_its_neighbours(tmp_path):
    rejected: list[str] = []
    with ResultStore(tmp_path / "r.db") as store:
        n = store.write([_row("a", "x", [1]), _row("b", "x", [1], repeat=10**23), _row("c", "x", [1], group=-10**23)],
                        rejected=rejected)
        assert n == 2 and store.done_keys("m") == {("a", "x", 0), ("c", "x", 0)}
        # c's group could not be stored: it is kept as an error row; b's key itself cannot be stored at all.
        assert store.load().errors == [("c", "x", 0, "cannot store this row (OverflowError: Python int too large "
                                                    "to convert to SQLite INTEGER)")]
    assert rejected == [
        "b [x] repeat 100000000000000000000000: cannot store this row "
        "(OverflowError: Python int too large to convert to SQLite INTEGER)",
        "c [x] repeat 0: cannot store this row (OverflowError: Python int too large to convert to SQLite INTEGER)",
    ]


def test_a_database_that_is_not_an_instab_store_is_never_written(tmp_path):
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE people (name TEXT)")
        con.execute("INSERT INTO people VALUES ('ada')")
    con.close()
    before = foreign.read_bytes()
    with pytest.raises(ValueError, match=r"other.db is not an instab results store \(it has table\(s\) people\); "
                                         r"refusing to write into it"):
        ResultStore(foreign)
    assert foreign.read_bytes() == before and not (tmp_path / "other.db-wal").exists()
    # A results table of the old schema (keyed by model name): refused with how to start afresh.
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as con:
        con.execute("CREATE TABLE results (model TEXT, image_id TEXT, environment TEXT, repeat INTEGER)")
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.close()
    with pytest.raises(ValueError, match=r"old.db was written by an older instab \(schema 1,.*another --out"):
        ResultStore(old)
    # An empty SQLite file (or a 0-byte file) becomes a store.
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with ResultStore(empty) as store:
        assert store.count() == 0
    with pytest.raises(IsADirectoryError, match="is a folder"):
        ResultStore(tmp_path)


def test_a_corrupted_store_is_a_clear_error(tmp_path):
    path = tmp_path / "r.db"
    _fill(path, [_row(f"i{i}", "x", [1]) for i in range(500)])
    data = bytearray(path.read_bytes())
    data[100:4096 * 3] = b"\x00" * (4096 * 3 - 100)  # wipe the schema page
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a usable SQLite database"):
        ResultStore(path)
    with pytest.raises(ValueError, match="not a usable SQLite database"):
        ResultStore(path, readonly=True)


def test_readonly_open_writes_nothing(tmp_path):
    path = tmp_path / "r.db"
    _fill(path, [_row("a", "x", [1])])
    before = path.read_bytes()
    with ResultStore(path, readonly=True) as store:
        assert store.load().ranked[0, 0, 0] == 1
        with pytest.raises(StoreWriteError, match="readonly"):
            store.write([_row("b", "x", [1])])
    assert path.read_bytes() == before
    wal = tmp_path / "r.db-wal"  # SQLite's own (empty) write-ahead log may be left for the next writer
    assert not wal.exists() or wal.stat().st_size == 0
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ResultStore(tmp_path / "nothere.db", readonly=True)


def _without_privileges() -> list[str]:
    """A command prefix under which permission bits apply (root ignores them: drop its capabilities)."""
    if os.name != "posix":
        pytest.skip("POSIX permission bits")
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None or subprocess.run(
            ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root, where permission bits are ignored, and setpriv cannot drop that")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]


def test_readonly_open_in_a_readonly_folder(tmp_path):
    prefix = _without_privileges()
    folder = tmp_path / "ro"
    folder.mkdir()
    _fill(folder / "r.db", [_row("a", "x", [1])])
    folder.chmod(0o555)
    (folder / "r.db").chmod(0o444)
    code = ("import sys; from instab.io.store import ResultStore\n"
            "with ResultStore(sys.argv[1], readonly=True) as s: print(s.count(), s.load().ranked.tolist())\n"
            "try: ResultStore(sys.argv[1])\n"
            "except (ValueError, OSError) as exc: print(type(exc).__name__, exc)\n")
    try:
        proc = subprocess.run([*prefix, sys.executable, "-c", code, str(folder / "r.db")], capture_output=True,
                              text=True, timeout=120)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "1 [[[1]]]"
    assert lines[1].startswith(("ValueError results store: cannot open", "PermissionError"))


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_free(tmp_path):
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        store.write([_row("a", "x", [1])])
        with pytest.raises(StoreBusyError, match=rf"{path.name} is in use by another instab run \(pid {os.getpid()}"):
            ResultStore(path)
        with ResultStore(path, readonly=True) as reader:  # readers are never blocked
            assert reader.count() == 1
    # A writer killed with SIGKILL holds no lock: the OS drops it with the process.
    code = (f"import os, signal, sys; from instab.io.store import ResultStore; s = ResultStore({str(path)!r}); "
            "print('locked', flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL and proc.stdout == "locked\n"
    with ResultStore(path) as store:
        assert store.count() == 1


def test_provenance_of_a_store(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        meta = store.meta()
    assert meta["instab_schema"] == SCHEMA_VERSION == 2
