"""End-to-end command line: score (with kill and resume, also of concurrent runs), report, models, exit codes.

Disk-full and Ctrl-C are in test_reliability.py.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instab.cli.main import main

MODEL = "mobilenet_v1_0.5_128_uint8_st.onnx"  # the small, fast shared model


def _manifest(samples_dir: Path, tmp: Path, n: int, envs=("orig", "copy"), extra_rows=()) -> Path:
    rows = list(csv.DictReader((samples_dir / "labels.csv").open()))[:n]
    path = tmp / "manifest.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "environment", "path", "labels", "repeat", "group"])
        for i, r in enumerate(rows):
            for env in envs:
                w.writerow([r["file"], env, samples_dir / r["file"], r["class_index"], 0, i % 2])
        for row in extra_rows:
            w.writerow(row)
    return path


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT image_id, environment, repeat, classes, error FROM results ORDER BY image_id, environment"
        ).fetchall()


def test_score_report_and_bad_rows(samples_dir, models_dir, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    extra = [
        ["broken", "orig", broken, "1", 0, ""],
        ["missing", "orig", tmp_path / "nothere.jpg", "1", 0, ""],
        ["badlabel", "orig", broken, "1001", 0, ""],
    ]
    manifest = _manifest(samples_dir, tmp_path, 6, extra_rows=extra)
    db = tmp_path / "r.db"
    rc = main(["score", str(manifest), "--model", str(models_dir / MODEL), "--out", str(db), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 1  # finished, some inputs failed
    # the counts on stdout, the rejected rows and failed items on stderr
    assert "2 rejected" in out and "not found" in err and "out of range" in err
    assert "1 failed" in out and "broken" in err
    rows = _rows(db)
    assert len(rows) == 13  # 6 images x 2 envs + the broken file, recorded with its error
    assert [r for r in rows if r[0] == "broken"][0][4] is not None

    rc = main(["report", str(db), "--out", str(tmp_path / "rep")])
    assert rc == 0
    rep = tmp_path / "rep"
    for fig in ("accuracy", "per_class", "per_group", "pairwise", "confidence", "topk"):
        assert (rep / "figures" / f"{fig}.png").stat().st_size > 1000, fig
        assert f'alt="{fig}"' in (rep / "report.html").read_text()
    for table in ("summary.json", "accuracy.csv", "per_class.csv", "pairwise.csv", "per_group.csv", "errors.csv"):
        assert (rep / table).is_file(), table


def test_score_resumes_after_sigkill(samples_dir, models_dir, tmp_path):
    manifest = _manifest(samples_dir, tmp_path, 40)
    model = str(models_dir / MODEL)
    db = tmp_path / "killed.db"
    cmd = [sys.executable, "-m", "instab.cli.main", "score", str(manifest), "--model", model, "--out", str(db),
           "--batch-size", "4", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                n = len(_rows(db))
            except sqlite3.Error:
                n = 0
            if n >= 12:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "scoring finished before it could be killed; make the manifest longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(_rows(db))
    assert 12 <= partial < 80

    assert subprocess.run(cmd, capture_output=True).returncode == 0
    resumed = _rows(db)
    assert len(resumed) == 80 and len({r[:3] for r in resumed}) == 80

    clean = tmp_path / "clean.db"
    assert main(["score", str(manifest), "--model", model, "--out", str(clean), "--batch-size", "4", "--quiet"]) == 0
    assert resumed == _rows(clean)


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _integrity(db: Path) -> tuple[str, int, int]:
    """(integrity_check, rows, distinct keys) of a store."""
    with sqlite3.connect(db) as con:
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
        n, keys = con.execute("SELECT COUNT(*), COUNT(DISTINCT model_hash || image_id || '|' || environment || '|' "
                              "|| repeat) FROM results").fetchone()
    return check, n, keys


def test_concurrent_runs_killed_at_random_moments(samples_dir, models_dir, tmp_path):
    envs = [f"e{j}" for j in range(8)]
    manifest = _manifest(samples_dir, tmp_path, 40, envs=envs)  # 320 items: about a second of scoring
    model = str(models_dir / MODEL)
    db = tmp_path / "killed.db"
    cmd = [sys.executable, "-m", "instab.cli", "score", str(manifest), "--model", model, "--out", str(db),
           "--batch-size", "4", "--threads", "1", "--quiet"]
    rng = random.Random(0)
    stored = 0
    for _ in range(3):
        # Two runs started together on one store: one works, the other is refused (or runs after it);
        # each is killed with SIGKILL at a random moment, if it is still running then.
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
        start = time.time()
        while time.time() < start + 60 and _count(db) <= stored and any(p.poll() is None for p in procs):
            time.sleep(0.01)  # until scoring has begun
        kill_at = [time.time() + rng.uniform(0.0, 0.6) for _ in procs]
        while any(p.poll() is None for p in procs):
            for p, t in zip(procs, kill_at, strict=True):
                if p.poll() is None and time.time() >= t:
                    os.kill(p.pid, signal.SIGKILL)
            time.sleep(0.02)
        for p in procs:
            assert p.returncode in (0, 2, -signal.SIGKILL), p.stderr.read()
            if p.returncode == 2:
                assert b"is in use by another instab run" in p.stderr.read()
        if db.exists():
            check, n, keys = _integrity(db)
            assert check == "ok" and n == keys and stored <= n <= 320  # nothing lost, nothing twice
            stored = n
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert _integrity(db) == ("ok", 320, 320)
    clean = tmp_path / "clean.db"
    assert main(["score", str(manifest), "--model", model, "--out", str(clean), "--batch-size", "4", "--quiet"]) == 0
    assert _rows(db) == _rows(clean)


def test_models_command(models_dir, tmp_path, capsys):
    assert main(["models", "list"]) == 0
    assert "efficientnet-lite0" in capsys.readouterr().out
    model = str(models_dir / "mobilenet_v2_1.0_224_int8_st.onnx")
    assert main(["models", "inspect", model]) == 0
    assert "QuantizeLinear" in capsys.readouterr().out
    out = tmp_path / "float.onnx"
    assert main(["models", "dequantize", model, "--out", str(out)]) == 0
    assert main(["models", "inspect", str(out)]) == 0
    assert "QuantizeLinear" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["score", "nothere.csv", "--out", "x.db"], "manifest: nothere.csv does not exist"),
        (["report", "nothere.db", "--out", "x"], "results: nothere.db does not exist"),
        (["models", "dequantize", "nothere.onnx", "--out", "y.onnx"], "nothere.onnx"),
    ],
)
def test_bad_usage_is_a_message_not_a_traceback(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_help_for_every_command(capsys):
    for cmd in ("demo", "simulate", "score", "report", "characterize", "models", "train"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert "usage: instab" in capsys.readouterr().out
