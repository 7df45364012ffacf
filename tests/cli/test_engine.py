"""``--engine``: the Ray options are refused where they do not apply, and a missing Ray says how to install it."""

from __future__ import annotations

import sys

import pytest

from instab.cli.main import main


@pytest.fixture
def manifest(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "m.csv"
    path.write_text("image_id,environment,path,labels\na,e,a.png,1\n")
    return path


@pytest.mark.parametrize(("extra", "message"), [
    (["--address", "auto"], "--address: only with --engine ray"),
    (["--actors", "2"], "--actors: only with --engine ray"),
    (["--cpus-per-actor", "2"], "--cpus-per-actor: only with --engine ray"),
    (["--provider", "cuda"], "--provider: only with --engine ray"),
    (["--engine", "ray", "--threads", "2"], "--threads: not with --engine ray"),
    (["--engine", "ray", "--actors", "0"], "--actors: expected a positive number, got 0"),
])
def test_score_options(manifest, tmp_path, capsys, extra, message):
    assert main(["score", str(manifest), "--out", str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"instab score: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_simulate_options(tmp_path, capsys):
    assert main(["simulate", "--images", str(tmp_path), "--labels", str(tmp_path / "l.csv"), "--env", "jpeg:q=5",
                 "--out", str(tmp_path / "o"), "--address", "auto"]) == 2
    assert "instab simulate: error: --address: only with --engine ray" in capsys.readouterr().err


def test_without_ray_the_message_says_how_to_install_it(manifest, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["score", str(manifest), "--out", str(tmp_path / "r"), "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert err == ("instab score: error: --engine ray needs Ray Data and pyarrow (ray is not installed): "
                   "pip install 'instab[ray]'\n")
    assert main(["simulate", "--images", str(tmp_path), "--labels", str(tmp_path / "l.csv"), "--env", "jpeg:q=5",
                 "--out", str(tmp_path / "o"), "--engine", "ray"]) == 2
    assert "pip install 'instab[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "o").exists()
