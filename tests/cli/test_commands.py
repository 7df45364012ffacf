"""The command modules without ../shared: a hand-predictable model through simulate, score and report."""

from __future__ import annotations

import pytest

from instab.cli.main import COMMANDS, build_parser, main
from tests._support.colour import NAMES, write_colour_folder


@pytest.fixture
def folder(tmp_path):
    write_colour_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("file,class_index\na.png,0\nb.png,1\nc.png,3\ngone.png,1\n")
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n\n")
    return tmp_path


def test_every_command_module_is_wired():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001 -- argparse has no public query
    assert list(sub.choices) == ["demo", "simulate", "characterize", "score", "report", "export", "mitigate", "train",
                                 "models", "envs", "devices", "capture"]
    for command in COMMANDS:
        name = command.__name__.rsplit(".", 1)[1]
        assert sub.choices[name].get_default("func") is command.run


def test_simulate_score_report(folder, capsys):
    sim = folder / "sim"
    rc = main(["simulate", "--images", str(folder), "--labels", str(folder / "labels.csv"), "--env", "png",
               "--env", "brightness:delta=0.2", "--out", str(sim)])
    out, err = capsys.readouterr()
    assert rc == 1  # gone.png: a label row without its file
    assert "labels.csv:5: file 'gone.png' not found" in err and out == f"wrote 6 images and {sim / 'manifest.csv'}\n"

    db = folder / "r.db"
    rc = main(["score", str(sim / "manifest.csv"), "--model", str(folder / "colour.onnx"), "--out", str(db),
               "-k", "2", "--batch-size", "4"])
    captured = capsys.readouterr()
    assert rc == 0
    # A run this short shows no progress on a stderr that is not a terminal (see test_conventions.py).
    assert captured.err == ""
    assert "model colour: 6 scored now, 0 already in the store, 0 failed" in captured.out
    assert captured.out.endswith(f"results: {db}\n")
    # Resumed: nothing to do, no progress line at all.
    assert main(["score", str(sim / "manifest.csv"), "--model", str(folder / "colour.onnx"), "--out", str(db),
                 "-k", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "0 scored now, 6 already in the store" in captured.out

    rc = main(["report", str(db), "--out", str(folder / "rep"), "--class-names", str(folder / "names.txt")])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    # a, b and c are red, green, blue (labels 0, 1, 3) in png; brightened they become
    # (255, 115, 51), (51, 255, 115), (115, 51, 255): a and b stay right, c (label "none") is wrong in both.
    assert out == ["top1: instability 0.00% (0/3)", f"report: {folder / 'rep' / 'report.html'}"]
    assert "none" in (folder / "rep" / "per_class.csv").read_text()


def test_quiet_score_writes_nothing_on_stderr(folder, capsys):
    (folder / "m.csv").write_text("image_id,environment,path,labels\na,x,a.png,red\na,y,a.png,red\n")
    rc = main(["score", str(folder / "m.csv"), "--model", str(folder / "colour.onnx"), "--out",
               str(folder / "q.db"), "-k", "2", "--class-names", str(folder / "names.txt"), "--quiet"])
    assert rc == 0 and capsys.readouterr().err == ""


@pytest.mark.parametrize("argv, words", [
    (["simulate", "--images", ".", "--labels", "labels.csv", "--out", "o"], "give at least one --env or --device"),
    (["simulate", "--images", "nowhere", "--labels", "labels.csv", "--env", "png", "--out", "o"],
     "no usable images: labels.csv lists none that exist in nowhere"),
    (["score", "m.csv", "--out", "x.db", "--class-names", "nothere.txt"], "--class-names: nothere.txt does not exist"),
    (["models", "inspect"], "models inspect: give a model name or path"),
    (["models", "dequantize", "colour.onnx"], "models dequantize: --out FILE.onnx is required"),
])
def test_usage_errors(argv, words, folder, monkeypatch, capsys):
    monkeypatch.chdir(folder)
    (folder / "m.csv").write_text("image_id,environment,path,labels\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"instab {argv[0]}: error: {words}\n"
