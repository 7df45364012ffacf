"""Training data helpers: input format, dataset loading, perturbations keyed per image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from instab.train.dataset import InputFormat, load_dataset, make_perturbation
from tests._support.training import tiny_classifier


def test_perturbation_is_keyed_per_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 5, 7, 3), dtype=np.uint8)
    noise = make_perturbation("noise:gaussian,sigma=0.1")
    whole = noise(images, 3, 10)
    split = np.concatenate([noise(images[:2], 3, 10), noise(images[2:], 3, 12)])
    np.testing.assert_array_equal(whole, split)
    assert not np.array_equal(whole, noise(images, 4, 10))
    diff = whole.astype(float) - images
    assert 0.05 * 255 < diff[(images > 60) & (images < 190)].std() < 0.15 * 255
    chain = make_perturbation("noise:gaussian,sigma=0.05+jpeg:q=50")(images, 0, 0)
    assert chain.shape == images.shape and chain.dtype == np.uint8
    with pytest.raises(ValueError):
        make_perturbation("noise:gaussian,sigma=0.2,bogus=1")
    with pytest.raises(ValueError):
        make_perturbation("nonsense:x=1")


def test_input_format():
    fmt = InputFormat.from_model(tiny_classifier())
    assert (fmt.layout, fmt.dtype, fmt.size) == ("nhwc", "uint8", 12)
    x = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    np.testing.assert_array_equal(fmt.to_input(x), x)
    f2 = InputFormat("nchw", "float32", 4, (2.0, 2.0, 2.0), (-1.0, 0.0, 1.0))
    y = f2.to_input(x)
    assert y.shape == (2, 3, 3, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y[:, 0], x[..., 0] * 2.0 - 1.0)
    with pytest.raises(ValueError, match="images"):
        fmt.to_input(x.astype(np.float32))


def test_load_dataset_skips_bad_rows(tmp_path):
    for i, size in enumerate([(30, 20), (20, 30), (5, 5)]):
        Image.fromarray(np.full((size[1], size[0], 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_bytes(b"junk")
    (tmp_path / "labels.csv").write_text("file,class_index\n0.png,1\n1.png,2;3\nbad.png,4\nmissing.png,5\n2.png,x\n")
    images, labels, files, errors = load_dataset(tmp_path, tmp_path / "labels.csv", 8)
    assert images.shape == (2, 8, 8, 3) and images.dtype == np.uint8
    assert labels.tolist() == [1, 2] and files == ["0.png", "1.png"]
    assert len(errors) == 3 and any("bad.png" in e for e in errors)
    images, labels, _, _ = load_dataset(tmp_path, tmp_path / "labels.csv", 8, limit=1)
    assert labels.tolist() == [1]
    with pytest.raises(ValueError, match="limit"):
        load_dataset(tmp_path, tmp_path / "labels.csv", 8, limit=0)
    with pytest.raises(FileNotFoundError, match="images"):
        load_dataset(tmp_path / "nope", tmp_path / "labels.csv", 8)
