"""``instab train`` end to end on a small model and a folder of images."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from PIL import Image

from instab.cli.main import build_parser
from tests._support.training import run_model, tiny_classifier, tiny_data


def parse(argv):
    """Through the real ``instab`` parser, so the wiring of the command is tested too."""
    return build_parser().parse_args(argv)


@pytest.fixture()
def folder(tmp_path):
    images, labels = tiny_data(12, size=12)
    rows = ["file,class_index"]
    for i, (im, y) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(im).resize((16, 14), Image.NEAREST).save(tmp_path / f"im{i}.png")
        rows.append(f"im{i}.png,{y}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    model = tmp_path / "float.onnx"
    onnx.save(tiny_classifier(), str(model))
    return tmp_path


def test_the_documented_invocation(folder, capsys):
    out = folder / "tuned.onnx"
    args = parse([
        "train", "--model", str(folder / "float.onnx"), "--images", str(folder), "--labels", str(folder / "labels.csv"),
        "--loss", "kl", "--alpha", "0.1", "--noise", "noise:gaussian,sigma=0.1", "--epochs", "1", "--limit", "8",
        "--batch-size", "4", "--seed", "0", "--out", str(out), "--quiet",
    ])
    assert args.func(args) == 0
    tuned = onnx.load(str(out))
    from instab import models

    assert models.load(out).spec == models.load(folder / "float.onnx").spec  # spec kept in the metadata
    base = tiny_classifier()
    assert [i.name for i in tuned.graph.input] == [i.name for i in base.graph.input]
    assert [o.name for o in tuned.graph.output] == [o.name for o in base.graph.output]
    x = tiny_data(3)[0]
    assert run_model(tuned, x).shape == (3, 10)
    assert not np.allclose(run_model(tuned, x), run_model(base, x))
    log = (folder / "tuned.log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,images,loss,ce,stability")
    assert len(log) == 1 + 2  # 8 images, batches of 4
    assert "wrote" in capsys.readouterr().out


def test_resume_and_a_corrupt_image(folder):
    (folder / "im3.png").write_bytes(b"not a png")
    ck = folder / "ck.npz"
    common = [
        "train", "--model", str(folder / "float.onnx"), "--images", str(folder), "--labels", str(folder / "labels.csv"),
        "--loss", "embedding", "--optimizer", "sgd", "--lr", "0.01", "--batch-size", "4", "--checkpoint", str(ck),
        "--quiet", "--trainable", "2",
    ]
    args = parse(common + ["--epochs", "1", "--out", str(folder / "a.onnx")])
    assert args.func(args) == 1  # one image skipped, the rest trained
    args = parse(common + ["--epochs", "2", "--resume", "--out", str(folder / "b.onnx")])
    assert args.func(args) == 1
    log = (folder / "b.log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "1", "1"]  # only the second epoch ran


def test_bad_arguments(folder):
    base = ["train", "--model", str(folder / "float.onnx"), "--images", str(folder), "--labels",
            str(folder / "labels.csv"), "--out", str(folder / "o.onnx")]
    with pytest.raises(ValueError, match="resume"):
        a = parse(base + ["--resume"])
        a.func(a)
    with pytest.raises(ValueError, match="noise"):
        a = parse(base + ["--noise", "noise:uniform,sigma=2"])
        a.func(a)
    with pytest.raises(FileNotFoundError, match="model"):
        a = parse(base[:2] + ["missing.onnx"] + base[3:])
        a.func(a)
    with pytest.raises(ValueError, match="trainable"):
        a = parse(base + ["--trainable", "some"])
        a.func(a)


def test_divergence_is_reported(folder):
    args = parse([
        "train", "--model", str(folder / "float.onnx"), "--images", str(folder), "--labels", str(folder / "labels.csv"),
        "--optimizer", "sgd", "--lr", "1e30", "--epochs", "3", "--batch-size", "4", "--out", str(folder / "o.onnx"),
        "--quiet",
    ])
    with pytest.raises(ValueError, match="diverged.*--lr"):
        args.func(args)
