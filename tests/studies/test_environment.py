"""Experiment tables, checked with a transparent stand-in classifier, then once with a real model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import instab.studies.environment as X
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
    sizes = np.full((len(images), len(envs)), -1)
    for j, text in enumerate(envs):
        env = X._environment(text)
        out = env.apply(list(images), seed=seed)
        for i, im in enumerate(out.images):
            correct[i, j] = expected_class(im) == labels[i]
        if out.sizes is not None:
            sizes[:, j] = out.sizes
    unstable = correct.any(1) & ~correct.all(1)
    return correct, sizes, unstable


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
    correct, sizes, unstable = manual_table(images, labels, envs, seed=5)
    assert [r.environment for r in table.rows] == [str(parse(e)) if e != "original" else e for e in envs]
    # The broken file is an error, not an image: 14 images remain.
    assert table.n_images == 14 and table.model == "mean-classifier"
    assert table.n_unstable == int(unstable.sum())
    assert table.instability == pytest.approx(unstable.mean())
    for j, row in enumerate(table.rows):
        assert row.accuracy == pytest.approx(correct[:, j].mean())
        assert row.flips_vs_first == pytest.approx((correct[:, 0] != correct[:, j]).mean())
        if row.mean_size is None:
            assert (sizes[:, j] < 0).all()
        else:
            assert row.mean_size == pytest.approx(sizes[:, j].mean())
    assert all(r.accuracy_top5 >= r.accuracy for r in table.rows)
    assert table.instability_top5 <= 1.0
    d = table.to_dict()
    assert json.loads(json.dumps(d)) == d
    text = table.to_text()
    assert all(r.environment in text for r in table.rows)
    assert f"({table.n_unstable}/14)" in text


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
    table = X.compression_quality(samples_dir, samples_dir / "labels.csv",
                                  str(models_dir / "mobilenet_v2_1.0_224_int8_st.onnx"), limit=24, threads=2)
    assert table.n_images == 24 and all(r.n_errors == 0 for r in table.rows)
    assert all(r.accuracy > 0.5 for r in table.rows)  # the model reaches ~0.83 top-1 on these images
    sizes = [r.mean_size for r in table.rows]
    assert sizes[0] > sizes[1] > sizes[2]  # q=100 > q=85 > q=50
    assert 0.0 <= table.instability <= 0.5


def test_command_line_writes_tables(dataset, tmp_path, monkeypatch, capsys):
    folder, _ = dataset
    monkeypatch.setattr(X, "_classifier", lambda model, threads: (MeanClassifier(), f"fake-{model}"))
    out = tmp_path / "results"
    assert X.main([str(folder), "--models", "a", "b", "--experiments", "compression-quality", "noise-sweep",
                   "--limit", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("compression-quality", "noise-sweep"):
        tables = json.loads((out / f"{name}.json").read_text())
        assert [t["model"] for t in tables] == ["fake-a", "fake-b"] and tables[0]["n_images"] == 5
        assert (out / f"{name}.txt").read_text().split("\n")[0] in printed
