"""The command line on unusable input, full disks, Ctrl-C and concurrent runs: exit codes and one-line messages."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instab import models
from instab.cli.main import main
from instab.io.store import ResultStore
from tests._support.colour import COLOURS, write_colour_folder


@pytest.fixture
def folder(tmp_path):
    write_colour_folder(tmp_path)
    rows = [f"{name},e{j},{name}.png,0,{j}" for j in range(4) for name in COLOURS]
    (tmp_path / "m.csv").write_text("image_id,environment,path,labels,repeat\n" + "\n".join(rows) + "\n")
    return tmp_path


def _score(folder: Path, *extra: str, db: str = "r.db", model: str = "colour.onnx") -> int:
    return main(["score", str(folder / "m.csv"), "--model", str(folder / model), "--out", str(folder / db), "-k",
                 "2", "--quiet", *extra])


def _one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def test_a_corrupt_or_truncated_model_is_a_message(folder, capsys):
    data = (folder / "colour.onnx").read_bytes()
    (folder / "bad.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model: .*bad.onnx is not a readable ONNX model \(DecodeError"):
        models.load(folder / "bad.onnx")
    assert _score(folder, model="bad.onnx") == 2
    _one_line_error(capsys, "instab score: error: model: ", "bad.onnx is not a readable ONNX model")


def test_a_foreign_database_is_never_written(folder, capsys):
    db = folder / "other.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE invoices (n INTEGER)")
    con.close()
    before = db.read_bytes()
    assert _score(folder, db="other.db") == 2
    _one_line_error(capsys, "is not an instab results store (it has table(s) invoices); refusing to write into it")
    assert db.read_bytes() == before
    assert main(["report", str(db), "--out", str(folder / "rep")]) == 2
    _one_line_error(capsys, "instab report: error: ", "is not an instab results store")


def test_a_corrupted_store_is_a_message(folder, capsys):
    rows = [f"{'x' * 300}{i},e,a.png,0,0" for i in range(100)]  # a store of many pages
    (folder / "m.csv").write_text("image_id,environment,path,labels,repeat\n" + "\n".join(rows) + "\n")
    assert _score(folder) == 0
    capsys.readouterr()
    db = folder / "r.db"
    data = bytearray(db.read_bytes())
    assert len(data) > 8 * 4096
    data[4 * 4096:] = b"\xa5" * (len(data) - 4 * 4096)  # the header and schema survive, the rows do not
    db.write_bytes(bytes(data))
    assert main(["report", str(db), "--out", str(folder / "rep")]) == 2
    _one_line_error(capsys, f"instab report: error: results store: {db} ", "malformed")
    assert _score(folder) == 2
    _one_line_error(capsys, f"instab score: error: results store: {db} ", "malformed")
    data[:100] = b"\x00" * 100  # the header too
    db.write_bytes(bytes(data))
    assert main(["report", str(db), "--out", str(folder / "rep")]) == 2
    _one_line_error(capsys, "instab report: error: ", "not a usable SQLite database")


def test_disk_full_is_a_message_and_keeps_what_was_stored(folder, capsys, monkeypatch):
    rows = [f"{'x' * 400}{i},e,a.png,0,0" for i in range(60)]  # long ids: a few rows fill a page
    (folder / "m.csv").write_text("image_id,environment,path,labels,repeat\n" + "\n".join(rows) + "\n")
    connect = ResultStore._connect  # noqa: SLF001 -- the test hook: a store that is full at 8 pages

    def tiny_disk(self):
        db = connect(self)
        db.execute("PRAGMA max_page_count = 8")
        return db

    monkeypatch.setattr(ResultStore, "_connect", tiny_disk)
    assert _score(folder, "--batch-size", "4") == 2
    err = _one_line_error(capsys, "instab score: error: ", "database or disk is full",
                          "results stored so far are kept", "run the same command again to resume")
    kept = int(re.search(r"the (\d+) results stored so far", err).group(1))
    monkeypatch.undo()
    with sqlite3.connect(folder / "r.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == kept > 0
    assert _score(folder) == 0
    assert f"{60 - kept} scored now, {kept} already in the store" in capsys.readouterr().out


def test_ctrl_c_while_scoring_says_what_is_kept(folder, capsys, monkeypatch):
    write = ResultStore.write
    calls = []

    def interrupted_write(self, rows, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write(self, rows, **kwargs)

    monkeypatch.setattr(ResultStore, "write", interrupted_write)
    assert _score(folder, "--batch-size", "4") == 130
    _one_line_error(capsys, f"instab score: interrupted: 4 results of model colour are stored in {folder / 'r.db'} "
                            "(4 by this run); run the same command again to resume")
    monkeypatch.undo()
    assert _score(folder) == 0
    assert "8 scored now, 4 already in the store" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["demo", "--out", "o"],
    ["simulate", "--images", ".", "--labels", "l.csv", "--env", "png", "--out", "o"],
    ["characterize", "--experiment", "noise", "--images", ".", "--labels", "l.csv"],
    ["characterize", "--experiment", "mitigation"],
    ["score", "m.csv", "--out", "r.db"],
    ["report", "r.db", "--out", "o"],
    ["train", "--model", "m.onnx", "--images", ".", "--labels", "l.csv", "--out", "o.onnx"],
    ["models", "list"],
])
def test_ctrl_c_in_every_command_exits_130(argv, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(f"instab.cli.{argv[0]}.run", interrupt)
    monkeypatch.setattr("instab.cli.mitigation.run_mitigation_cli", interrupt)
    assert main(argv) == 130
    _one_line_error(capsys, f"instab {argv[0]}: interrupted: nothing to resume: run it again to start over")


def test_manifest_problems(folder, capsys):
    assert main(["score", str(folder), "--model", str(folder / "colour.onnx"), "--out", str(folder / "r.db")]) == 2
    _one_line_error(capsys, f"instab score: error: manifest: {folder} is a folder, not a CSV file")
    # A huge repeat, an oversized field and a byte that is not UTF-8 cost only their rows.
    with (folder / "m.csv").open("ab") as fh:
        fh.write(b"a,huge,a.png,0,99999999999999999999999\n")
        fh.write(f"{'x' * 200_000},e0,a.png,0,0\n".encode())
        fh.write(b"b,latin\xe9,b.png,0,0\n")
    assert _score(folder) == 1
    out, err = capsys.readouterr()
    assert "12 valid rows" in out and "3 rejected" in out and "m.csv:14: repeat: 99999999999999999999999 is out " \
           "of range" in err and "m.csv:15: field larger than field limit" in err and "m.csv:16: not valid UTF-8" in err
    assert "12 scored now" in out


def test_report_reads_a_readonly_store(folder, capsys):
    assert _score(folder) == 0
    ro = folder / "ro"
    ro.mkdir()
    shutil.copy(folder / "r.db", ro / "r.db")
    before = (ro / "r.db").read_bytes()
    cmd = [sys.executable, "-m", "instab.cli", "report", str(ro / "r.db"), "--out", str(folder / "rep")]
    if os.geteuid() == 0:  # root ignores permission bits: drop its capabilities, if this system can
        if shutil.which("setpriv") is None or subprocess.run(
                ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "true"], capture_output=True).returncode:
            pytest.skip("root ignores permission bits and setpriv cannot drop that")
        cmd = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", *cmd]
    (ro / "r.db").chmod(0o444)
    ro.chmod(0o555)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert (ro / "r.db").read_bytes() == before and sorted(p.name for p in ro.iterdir()) == ["r.db"]
    summary = json.loads((folder / "rep" / "summary.json").read_text())
    prov = summary["provenance"]
    assert summary["model_hash"] == next(iter(prov["models"].values())) and len(prov["scoring_runs"]) == 1
    assert prov["argv"][1:3] == ["report", str(ro / "r.db")] and {"instab", "onnxruntime", "numpy"} <= set(prov)


def _score_cmd(folder: Path, db: Path, batch: int = 2) -> list[str]:
    return [sys.executable, "-m", "instab.cli", "score", str(folder / "m.csv"), "--model",
            str(folder / "colour.onnx"), "--out", str(db), "-k", "2", "--batch-size", str(batch), "--threads", "1",
            "--quiet"]


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_two_concurrent_runs_on_one_store(folder):
    rng = np.random.default_rng(0)
    for name in COLOURS:  # large noisy images: slow enough to decode that the runs overlap
        Image.fromarray(rng.integers(0, 255, (1000, 1000, 3), dtype=np.uint8)).save(folder / f"{name}.png",
                                                                                    compress_level=1)
    rows = [f"i{i},e{j},{'abc'[i % 3]}.png,0,0" for i in range(150) for j in range(2)]
    (folder / "m.csv").write_text("image_id,environment,path,labels,repeat\n" + "\n".join(rows) + "\n")
    db = folder / "r.db"
    first = subprocess.Popen(_score_cmd(folder, db, batch=1), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.time() + 120
    while _count(db) == 0 and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first run finished before the second could start; make the manifest longer"
    second = subprocess.run(_score_cmd(folder, db), capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2
    assert second.stderr.startswith("instab score: error: results store: r.db is in use by another instab run "
                                     f"(pid {first.pid} since ")
    assert "300 scored now" in out and _count(db) == 300
