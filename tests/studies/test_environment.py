"""Experiment tables, checked with a transparent stand-in classifier, then once with a real model."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import instab.studies.environment as X
from instab import Classifier, models
from instab._shared.decode import decode
from instab.environments.registry import parse


@dataclass
class _Pred:
    classes: np.ndarray
    errors: list


class MeanClassifier:
    """Class = floor(mean pixel value) mod 10, so small pixel changes flip it; top-5 continues upwards."""

    name = "mean-classifier"

    def predict(self, images, k=5):
        top = np.array([int(np.asarray(im, np.float64).mean()) % 10 for im in images])
        return _Pred((top[:, None] + np.arange(k)[None]) % 10, [None] * len(images))


def expected_class(image: np.ndarray) -> int:
    return int(np.asarray(image, np.float64).mean()) % 10


@pytest.fixture
def dataset(tmp_path: Path):
    rng = np.random.default_rng(0)
    rows = ["file,class_index"]
    images = []
    for i in range(14):
        yy, xx = np.mgrid[0:40, 0:52]
        img = np.clip(np.stack([xx * (2 + i % 3), yy * 3, (xx + yy) * 2], -1) + rng.normal(0, 12, (40, 52, 3)),
                      0, 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        images.append(img)
        rows.append(f"im{i}.png,{expected_class(img) if i % 4 else (expected_class(img) + 1) % 10}")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows.append("broken.png,3")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path, images


def manual_table(images, labels, envs, seed=0):
    correct = np.zeros((len(images), len(envs)), bool)
    correct5 = np.zeros((len(images), len(envs)), bool)
    sizes = np.full((len(images), len(envs)), -1)
    for j, text in enumerate(envs):
        env = X._environment(text)
        out = env.apply(list(images), seed=seed)
        for i, im in enumerate(out.images):
            correct[i, j] = expected_class(im) == labels[i]
            correct5[i, j] = (labels[i] - expected_class(im)) % 10 < 5  # MeanClassifier's top-5: c .. c+4
        if out.sizes is not None:
            sizes[:, j] = out.sizes
    unstable = correct.any(1) & ~correct.all(1)
    unstable5 = correct5.any(1) & ~correct5.all(1)
    return correct, correct5, sizes, unstable, unstable5


@pytest.mark.parametrize("experiment, envs", [
    (X.compression_quality, list(X.QUALITY_ENVIRONMENTS)),
    (X.compression_format, list(X.FORMAT_ENVIRONMENTS)),
    (X.noise_sweep, ["original"] + [f"noise:gaussian,sigma={s}" for s in X.NOISE_SIGMAS]),
    (X.phone_sweep, ["original"] + [f"distort:phone,strength={s:g}" for s in X.PHONE_STRENGTHS]),
])
def test_tables_match_a_manual_computation(dataset, experiment, envs):
    folder, images = dataset
    labels_csv = folder / "labels.csv"
    table = experiment(folder, labels_csv, MeanClassifier(), chunk=4, threads=2, seed=5)
    labels = [int(line.split(",")[1]) for line in labels_csv.read_text().splitlines()[1:15]]
    correct, correct5, sizes, unstable, unstable5 = manual_table(images, labels, envs, seed=5)
    assert [r.environment for r in table.rows] == [str(parse(e)) if e != "original" else e for e in envs]
    # The broken file is an error, not an image: 14 images remain.
    assert table.n_images == 14 and table.model == "mean-classifier"
    assert table.n_unstable == int(unstable.sum())
    assert table.instability == pytest.approx(unstable.mean())
    assert table.n_unstable_top5 == int(unstable5.sum())
    assert table.instability_top5 == pytest.approx(unstable5.mean())
    for j, row in enumerate(table.rows):
        assert row.accuracy == pytest.approx(correct[:, j].mean())
        assert row.accuracy_top5 == pytest.approx(correct5[:, j].mean())
        assert row.flips_vs_first == pytest.approx((correct[:, 0] != correct[:, j]).mean())
        if row.mean_size is None:
            assert (sizes[:, j] < 0).all()
        else:
            assert row.mean_size == pytest.approx(sizes[:, j].mean())
    d = table.to_dict()
    assert json.loads(json.dumps(d)) == d
    text = table.to_text()
    assert all(r.environment in text for r in table.rows)
    assert f"({table.n_unstable}/14)" in text


class BandClassifier:
    """Flat grey images: class = mean // 26 (0..9); the ranking continues upwards: c, c+1, ..., c+4 (mod 10)."""

    name = "band-classifier"

    def predict(self, images, k=5):
        top = np.array([int(np.asarray(im).mean()) // 26 for im in images])
        return _Pred((top[:, None] + np.arange(k)[None]) % 10, [None] * len(images))


# (grey value, label). brightness:delta=0.1 adds 26 levels (clipped at 255), moving every class one
# band up except the four at 236..250, which saturate in band 9. By hand (c = class before, after):
#   30 (1->2), label 1: top-1 right -> wrong      60 (2->3), label 2: right -> wrong
#   90 (3->4), label 4: top-1 wrong -> right (top-3 right in both)
#   236, 240, 245, 250 (9->9), label 9: right in both
#   120 (4->5), label 8: top-1, top-3 wrong in both; top-5 right in both
#   150 (5->6), label 0: top-1, top-3 wrong in both; top-5 wrong -> right ({6..9, 0})
#   180 (6->7), label 9: top-1 wrong in both; top-3 wrong -> right; top-5 right in both
BANDS = [(30, 1), (60, 2), (90, 4), (236, 9), (240, 9), (245, 9), (250, 9), (120, 8), (150, 0), (180, 9)]


def test_known_answer_three_of_ten_flip(tmp_path):
    rows = ["file,class_index"]
    for i, (value, label) in enumerate(BANDS):
        Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(tmp_path / f"g{i}.png")
        rows.append(f"g{i}.png,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    table = X.run_environments(tmp_path, tmp_path / "labels.csv", BandClassifier(),
                               ["original", "png", "brightness:delta=0.1"], chunk=4)
    assert table.n_images == 10
    assert (table.n_unstable, table.n_unstable_top3, table.n_unstable_top5) == (3, 3, 3)
    assert (table.instability, table.instability_top3, table.instability_top5) == (0.3, 0.3, 0.3)
    original, png, bright = table.rows
    assert (original.accuracy, png.accuracy, bright.accuracy) == (0.6, 0.6, 0.5)
    assert (original.accuracy_top5, png.accuracy_top5, bright.accuracy_top5) == (0.9, 0.9, 0.8)
    # png is lossless: nothing flips against the original; brightness flips the first three images.
    assert (original.flips_vs_first, png.flips_vs_first, bright.flips_vs_first) == (0.0, 0.0, 0.3)
    assert original.mean_size is None and png.mean_size > 0 and bright.mean_size is None
    assert "(3/10)" in table.to_text()


def test_chunking_and_threads_do_not_change_results(dataset):
    folder, _ = dataset
    a = X.noise_sweep(folder, folder / "labels.csv", MeanClassifier(), chunk=3, threads=1)
    b = X.noise_sweep(folder, folder / "labels.csv", MeanClassifier(), chunk=100, threads=2)
    assert a.to_dict() == b.to_dict()


def test_several_models_share_the_environments(dataset):
    folder, _ = dataset
    tables = X.compression_quality(folder, folder / "labels.csv", [MeanClassifier(), MeanClassifier()], limit=6)
    assert len(tables) == 2 and tables[0].to_dict() == tables[1].to_dict()
    assert tables[0].n_images == 6


def test_bad_arguments(dataset):
    folder, _ = dataset
    with pytest.raises(ValueError, match="environments"):
        X.run_environments(folder, folder / "labels.csv", MeanClassifier(), [])
    with pytest.raises(ValueError, match="limit"):
        X.compression_quality(folder, folder / "labels.csv", MeanClassifier(), limit=0)
    with pytest.raises(ValueError, match="unknown kind"):
        X.run_environments(folder, folder / "labels.csv", MeanClassifier(), ["jpg:q=5"])
    with pytest.raises(FileNotFoundError):
        X.compression_quality(folder, folder / "missing.csv", MeanClassifier())


def test_real_model_on_shared_samples(samples_dir, models_dir):
    """A small slice of the real experiment: the shared int8 MobileNetV2 on 24 ImageNet samples."""
    model = models_dir / "mobilenet_v2_1.0_224_int8_st.onnx"
    table = X.compression_quality(samples_dir, samples_dir / "labels.csv", str(model), limit=24, threads=2)
    assert table.n_images == 24 and all(r.n_errors == 0 for r in table.rows)
    sizes = [r.mean_size for r in table.rows]
    assert sizes[0] > sizes[1] > sizes[2]  # q=100 > q=85 > q=50
    # The same numbers from the pieces: decode, each codec, the classifier, counted here.
    rows = list(csv.DictReader((samples_dir / "labels.csv").open()))[:24]
    labels = np.array([int(r["class_index"]) for r in rows])
    images = [decode(samples_dir / r["file"]) for r in rows]
    clf = Classifier(models.load(model), threads=2)
    correct = np.stack([clf.predict(parse(e).apply(images).images, k=1).classes[:, 0] == labels
                        for e in X.QUALITY_ENVIRONMENTS], axis=1)
    assert [r.accuracy for r in table.rows] == pytest.approx(correct.mean(axis=0).tolist())
    unstable = correct.any(axis=1) & ~correct.all(axis=1)
    assert table.n_unstable == int(unstable.sum())


def test_characterize_writes_the_result_of_each_experiment(dataset, tmp_path, monkeypatch, capsys):
    """``instab characterize`` prints ``to_text()`` and writes ``to_dict()``: one table per model (and sweep)."""
    from instab.cli.main import main
    from instab.studies.result import StudyResult

    folder, _ = dataset
    monkeypatch.setattr(X, "_classifier", lambda model, threads: (MeanClassifier(), f"fake-{model}"))
    out = tmp_path / "results"
    for name, tables in (("compression-quality", ["compression-quality"] * 2),
                         ("noise", ["noise-sweep", "noise-sweep", "phone-sweep", "phone-sweep"])):
        assert main(["characterize", "--experiment", name, "--images", str(folder), "--labels",
                     str(folder / "labels.csv"), "--model", "a", "--model", "b", "--limit", "5",
                     "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        data = json.loads((out / f"{name}.json").read_text())
        assert data["experiment"] == name
        assert [t["name"] for t in data["tables"]] == tables
        assert [t["model"] for t in data["tables"]] == ["fake-a", "fake-b"] * (len(tables) // 2)
        assert all(t["n_images"] == 5 for t in data["tables"])
        assert (out / f"{name}.txt").read_text() == printed
    direct = X.compression_quality(folder, folder / "labels.csv", ["a", "b"], limit=5)
    assert isinstance(direct, StudyResult) and isinstance(direct[0], StudyResult)
    written = json.loads((out / "compression-quality.json").read_text())
    assert written.pop("provenance")["models"] == {"a": None, "b": None}  # fake models: nothing to hash
    assert direct.to_dict() == written
    assert direct.to_text() + "\n" == (out / "compression-quality.txt").read_text()
