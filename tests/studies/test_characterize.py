"""``instab characterize``: every experiment's result prints ``to_text()`` and writes ``to_dict()``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from instab import isp
from instab.cli.main import main
from instab.studies import isp as isp_study
from instab.studies.characterize import run_experiment
from instab.studies.result import StudyResult, to_plain
from tests._support.training import tiny_classifier


@pytest.fixture
def smooth_set(tmp_path):
    """Four smooth 48x64 colour gradients (band-limited, as unprocessing assumes), labelled 0..3."""
    yy, xx = np.mgrid[0:48, 0:64] / 64.0
    rows = ["file,class_index"]
    for i in range(4):
        img = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.1 * i + 0.2 * xx * yy], -1)
        Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).save(tmp_path / f"g{i}.png")
        rows.append(f"g{i}.png,{i}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def _run(argv, capsys):
    rc = main(["characterize", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_to_plain():
    from dataclasses import dataclass

    @dataclass
    class D:
        a: float
        b: tuple

    assert to_plain({"x": D(float("nan"), (np.int64(3), np.float32(0.5), np.array([1.0, np.inf])))}) == {
        "x": {"a": None, "b": [3, 0.5, [1.0, None]]}
    }


def test_isp_psnr_round_trip(smooth_set, tmp_path, capsys):
    out = tmp_path / "out"
    rc, printed, _ = _run(["--experiment", "isp-psnr", "--images", str(smooth_set), "--labels",
                           str(smooth_set / "labels.csv"), "--limit", "3", "--out", str(out)], capsys)
    assert rc == 0
    data = json.loads((out / "isp-psnr.json").read_text())
    assert (out / "isp-psnr.txt").read_text() == printed and printed.startswith("Round trip unprocess -> develop, 3")
    assert data["n_images"] == 3 and data["raw_frame"] == [] and list(data["round_trip"]) == ["0.0", "1.0"]
    paths = [smooth_set / f"g{i}.png" for i in range(3)]
    for blur in (0.0, 1.0):
        direct = isp_study.round_trip_psnr(paths, None, blur)
        assert data["round_trip"][str(blur)] == direct
        assert set(direct) == set(isp.DEMOSAICS)
        for demosaic, stats in direct.items():  # smooth images come back almost exactly
            assert stats["min"] >= 30 and stats["share_30dB"] == 1.0, (blur, demosaic, stats)


def test_isp_psnr_raw_frame_alone(raw_dir, tmp_path, capsys):
    rc, printed, _ = _run(["--experiment", "isp-psnr", "--raw", str(raw_dir), "--out", str(tmp_path)], capsys)
    assert rc == 0
    data = json.loads((tmp_path / "isp-psnr.json").read_text())
    assert data["round_trip"] == {} and data["raw_frame"] == isp_study.raw_frame_psnr(raw_dir)
    assert "| rggb |" in printed and "instab-bilinear vs libraw-linear" in printed


def test_isp_experiment_with_a_tiny_model(smooth_set, tmp_path):
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_classifier(classes=10, size=12), str(model))
    result = run_experiment("isp", smooth_set, smooth_set / "labels.csv", [str(model)], limit=3, seed=1)
    assert isinstance(result, isp_study.IspStudy) and isinstance(result, StudyResult)
    assert isinstance(result.raw_mitigation, isp_study.RawMitigationResult)
    assert result.isp.n_images == 3 and result.isp.isps == list(isp_study.DEFAULT_ISPS)
    data = result.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["isp"]["top1"] == result.isp.top1 and data["raw_mitigation"]["n_images"] == 3
    assert result.to_text() == result.isp.markdown() + "\n\nRaw mitigation:\n" + result.raw_mitigation.markdown()


def test_runtime_through_the_command(samples_dir, models_dir, tmp_path, capsys):
    int8, coral = (str(models_dir / m) for m in ("mobilenet_v2_1.0_224_int8_st.onnx",
                                                  "mobilenet_v2_1.0_224_uint8_coral.onnx"))
    rc, printed, _ = _run(["--experiment", "runtime", "--images", str(samples_dir), "--labels",
                           str(samples_dir / "labels.csv"), "--model", int8, "--model", coral, "--limit", "4",
                           "--out", str(tmp_path)], capsys)
    assert rc == 0
    data = json.loads((tmp_path / "runtime.json").read_text())
    assert data["configs"][:2] == [f"{Path(int8).name}: ORT all optimizations",
                                   f"{Path(int8).name}: ORT optimization extended"]
    assert data["groups"][0] == "reference" and "other model" in data["groups"] and "conversion" in data["groups"]
    assert data["k"] == 5 and len(data["accuracy"]) == len(data["configs"]) == len(data["seconds"])
    assert printed.splitlines()[1] == f"model {Path(int8).name}" and "instability over all" in printed


@pytest.mark.parametrize("argv, words", [
    (["--experiment", "noise"], "--images and --labels are required"),
    (["--experiment", "isp-psnr"], "--images and --labels are required (or --raw)"),
    (["--experiment", "runtime", "--images", ".", "--labels", "x.csv", "--model", "nothere.onnx"],
     "'nothere.onnx' is neither a file nor a built-in model"),
    (["--experiment", "devices", "--images", ".", "--labels", "nothere.csv"], "labels: nothere.csv does not exist"),
])
def test_usage_errors(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and words in err and "Traceback" not in err


@pytest.fixture
def flawed_set(smooth_set):
    """The smooth set plus a label row without its file and a file that cannot be decoded."""
    (smooth_set / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with (smooth_set / "labels.csv").open("a") as fh:
        fh.write("gone.png,1\nbroken.png,2\n")
    return smooth_set


def test_bad_input_is_reported_and_exits_1(flawed_set, tmp_path, capsys):
    rc, printed, err = _run(["--experiment", "isp-psnr", "--images", str(flawed_set), "--labels",
                             str(flawed_set / "labels.csv"), "--out", str(tmp_path / "out")], capsys)
    assert rc == 1  # finished, some inputs failed
    assert "labels.csv:6: file 'gone.png' not found" in err and "broken.png" in err and "Traceback" not in err
    data = json.loads((tmp_path / "out" / "isp-psnr.json").read_text())
    assert data["n_images"] == 4 and printed.startswith("Round trip unprocess -> develop, 4")


@pytest.mark.parametrize("experiment", ["compression-quality", "isp"])
def test_bad_input_with_a_model(experiment, flawed_set, tmp_path, capsys):
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_classifier(classes=10, size=12), str(model))
    rc, _, err = _run(["--experiment", experiment, "--images", str(flawed_set), "--labels",
                       str(flawed_set / "labels.csv"), "--model", str(model)], capsys)
    assert rc == 1 and "Traceback" not in err
    assert "labels.csv:6: file 'gone.png' not found" in err and "broken.png" in err


def test_out_is_checked_before_the_experiment_runs(smooth_set, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("instab.cli.characterize.run_experiment", lambda *a, **k: pytest.fail("it ran"))
    (tmp_path / "taken").write_text("a file")
    rc, _, err = _run(["--experiment", "noise", "--images", str(smooth_set), "--labels",
                       str(smooth_set / "labels.csv"), "--out", str(tmp_path / "taken")], capsys)
    assert rc == 2 and err == f"instab characterize: error: --out: {tmp_path / 'taken'} is a file, not a folder\n"
    rc, _, err = _run(["--experiment", "noise", "--images", str(smooth_set), "--labels",
                       str(smooth_set / "labels.csv"), "--out", str(tmp_path / "taken" / "sub")], capsys)
    assert rc == 2 and err.startswith(f"instab characterize: error: --out: cannot create {tmp_path / 'taken' / 'sub'}")


def test_study_json_has_provenance(smooth_set, tmp_path, capsys):
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_classifier(classes=10, size=12), str(model))
    rc, _, _ = _run(["--experiment", "compression-quality", "--images", str(smooth_set), "--labels",
                     str(smooth_set / "labels.csv"), "--model", str(model), "--seed", "3", "--out",
                     str(tmp_path / "out")], capsys)
    assert rc == 0
    prov = json.loads((tmp_path / "out" / "compression-quality.json").read_text())["provenance"]
    from instab import models
    from instab.io.store import model_hash

    assert prov["models"] == {str(model): model_hash(models.load(model))} and prov["seeds"] == {"seed": 3}
    assert {"instab", "onnxruntime", "numpy", "argv", "host", "started", "finished"} <= set(prov)
