"""Classifier: inputs, per-item errors, batching, scores, providers, runtime study."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

import instab
from instab import models
from instab._shared import decode as _decode
from instab.studies import runtime

V1 = "mobilenet_v1_0.5_128_uint8_st.onnx"


@pytest.fixture(scope="module")
def samples(samples_dir: Path) -> tuple[list[Path], np.ndarray]:
    rows = list(csv.DictReader(open(samples_dir / "labels.csv")))[:24]
    return [samples_dir / r["file"] for r in rows], np.array([int(r["class_index"]) for r in rows])


@pytest.fixture(scope="module")
def v1(models_dir: Path) -> instab.Classifier:
    return instab.Classifier(models.load(models_dir / V1), threads=2)


@pytest.fixture(scope="module")
def effnet() -> instab.Classifier:
    return instab.Classifier(models.load("efficientnet-lite0"), threads=2)


def test_corrupt_and_unreadable_items_are_per_item_errors(v1, samples, tmp_path):
    paths, _ = samples
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(paths[0].read_bytes()[:200])  # truncated JPEG
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image")
    items = [paths[0], corrupt, tmp_path / "missing.jpg", garbage, np.zeros((4, 4, 3), np.float32), paths[1]]
    p = v1.predict(items, k=3, batch_size=4)
    assert [e is None for e in p.errors] == [True, False, False, False, False, True]
    assert "missing.jpg" in p.errors[2]
    assert "uint8" in p.errors[4]
    assert (p.classes[~p.ok] == -1).all() and np.isnan(p.scores[~p.ok]).all()
    alone = v1.predict([paths[0], paths[1]], k=3)
    np.testing.assert_array_equal(p.classes[p.ok], alone.classes)
    np.testing.assert_allclose(p.scores[p.ok], alone.scores)


def test_all_items_failing_gives_all_errors(v1, tmp_path):
    p = v1.predict([tmp_path / "a.jpg", tmp_path / "b.jpg"], k=2, embeddings=True)
    assert not p.ok.any() and (p.classes == -1).all() and p.embeddings.shape[0] == 2


def test_input_kinds_agree(v1, samples):
    paths, _ = samples
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths[:3]]
    by_path = v1.predict(paths[:3], k=5)
    by_array = v1.predict(arrays, k=5)
    by_bytes = v1.predict([p.read_bytes() for p in paths[:3]], k=5)
    np.testing.assert_array_equal(by_path.classes, by_array.classes)
    np.testing.assert_array_equal(by_path.classes, by_bytes.classes)
    batch = np.stack([a[:200, :200] for a in arrays])  # a uint8 NHWC batch
    assert v1.predict(batch, k=2).classes.shape == (3, 2)
    one = v1.predict(str(paths[0]), k=5)
    np.testing.assert_array_equal(one.classes, by_path.classes[:1])
    gray = v1.predict([arrays[0][:, :, 0]], k=1)  # a gray image is taken as RGB
    assert gray.ok.all()


def test_batch_size_does_not_change_results(v1, samples):
    paths, _ = samples
    a = v1.predict(paths, k=5, batch_size=24, full_scores=True)
    b = v1.predict(paths, k=5, batch_size=5, full_scores=True)
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_allclose(a.full_scores, b.full_scores, atol=1e-6)


def test_topk_matches_full_scores_and_softmax(effnet, samples):
    paths, labels = samples
    p = effnet.predict(paths[:8], k=5, full_scores=True)
    full = p.full_scores
    assert full.shape == (8, 1000)
    np.testing.assert_allclose(full.sum(axis=1), 1.0, atol=1e-5)  # softmax applied to the logits
    order = np.argsort(-full, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(p.classes, order)
    np.testing.assert_allclose(p.scores, np.take_along_axis(full, order, axis=1))
    assert (np.diff(p.scores, axis=1) <= 0).all()


def test_background_class_is_removed(models_dir, samples):
    paths, _ = samples
    coral = instab.Classifier(models.load(models_dir / "mobilenet_v2_1.0_224_uint8_coral.onnx"), threads=2)
    p = coral.predict(paths[:4], k=1, full_scores=True)
    assert p.full_scores.shape == (4, 1000)
    spec = coral.spec
    tensor = coral._preprocess([np.asarray(Image.open(x).convert("RGB")) for x in paths[:4]])
    (raw,) = coral.session.run(None, {spec.input_name: tensor})
    assert raw.shape == (4, 1001)
    np.testing.assert_array_equal(p.classes[:, 0], raw.argmax(axis=1) - 1)


def test_full_scores_feed_instability(v1, samples):
    paths, labels = samples
    a = v1.predict(paths, k=1, full_scores=True).full_scores
    b = v1.predict(paths, k=1, full_scores=True, batch_size=7).full_scores
    result = instab.instability(np.stack([a, b], axis=1), labels, k=1)
    assert result.rate == 0.0 and result.n_images == len(paths)


def test_argument_errors(v1, models_dir):
    with pytest.raises(ValueError, match="k:"):
        v1.predict([], k=0)
    with pytest.raises(ValueError, match="k:"):
        v1.predict([], k=1001)
    with pytest.raises(ValueError, match="batch_size"):
        v1.predict([], batch_size=0)
    with pytest.raises(TypeError, match="images_or_paths"):
        v1.predict(3)
    with pytest.raises(ValueError, match="images_or_paths"):
        v1.predict(np.zeros((1, 1, 2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="provider"):
        instab.Classifier(models.load(models_dir / V1), provider="tpu")
    with pytest.raises(ValueError, match="optimization"):
        instab.Classifier(models.load(models_dir / V1), optimization="max")
    with pytest.raises(ValueError, match="decode"):
        instab.Classifier(models.load(models_dir / V1), decode="fast")
    with pytest.raises(ValueError, match="threads"):
        instab.Classifier(models.load(models_dir / V1), threads=0)
    with pytest.raises(TypeError, match="model"):
        instab.Classifier(42)
    empty = v1.predict([], k=3)
    assert empty.classes.shape == (0, 3) and empty.errors == []


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="needs a CPU-only onnxruntime")
def test_cuda_without_gpu_runtime(models_dir, samples):
    m = models.load(models_dir / V1)
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        instab.Classifier(m, provider="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = instab.Classifier(m, provider="cuda", fallback=True)
    assert clf.provider == "cpu" and any("falling back" in str(w.message) for w in caught)
    assert clf.predict(samples[0][:2], k=1).ok.all()


def test_draft_decoding_shrinks_large_jpegs(tmp_path, samples):
    big = tmp_path / "big.jpg"
    Image.open(samples[0][0]).convert("RGB").resize((1200, 900)).save(big, quality=90)
    full = _decode.decode(big)
    draft = _decode.decode(big, draft_size=256)
    assert full.shape == (900, 1200, 3)
    assert draft.shape == (450, 600, 3)  # DCT scaling by 1/2 keeps the shorter side >= 256
    png = tmp_path / "big.png"
    Image.fromarray(full).save(png)
    assert _decode.decode(png, draft_size=256).shape == full.shape  # only JPEG has draft mode


def test_runtime_study(models_dir, samples):
    paths, labels = samples
    v1_model = models.load(models_dir / V1)
    configs = [
        runtime.RuntimeConfig("int8", v1_model),
        runtime.RuntimeConfig("float", v1_model, dequantize=True),
        runtime.RuntimeConfig("int8 1 thread", v1_model, threads=1),
        runtime.RuntimeConfig("int8 no optimization", v1_model, optimization="disable"),
        runtime.RuntimeConfig("int8 draft decode", v1_model, decode="draft"),
    ]
    study = runtime.compare_runtimes(paths, labels, configs, k=5, batch_size=8)
    assert study.classes.shape == (len(paths), 5, 5)
    agree = study.agreement()
    np.testing.assert_array_equal(study.classes[:, 0], study.classes[:, 2])  # threads do not change the answer
    assert agree[0, 2] == 1.0 and np.allclose(np.diag(agree), 1.0)
    expected = (study.classes[:, :, :1] == labels[:, None, None]).any(axis=2).mean(axis=0)
    np.testing.assert_allclose(study.top1.accuracy, expected)
    assert study.top1.pairwise()[0, 2] == 0.0
    assert "int8 draft decode" in study.table()
    with pytest.raises(ValueError, match="two"):
        runtime.compare_runtimes(paths, labels, configs[:1])
    names = runtime.default_configs(cuda=True)
    assert names[0].name == "mobilenet-v2-int8-st: ORT all optimizations" and names[0].group == runtime.REFERENCE
    assert [c.label for c in names if c.provider == "cuda"] == ["mobilenet-v2-int8-st", "mobilenet-v2-coral"]


def test_preprocessing_failure_is_a_per_item_error(v1, samples, monkeypatch):
    from instab.inference import classifier

    real = classifier.preprocess

    def picky(images, *args, **kwargs):
        if any(im.shape[1] == 7 for im in images):
            raise ValueError("images: width 7 is not supported here")
        return real(images, *args, **kwargs)

    monkeypatch.setattr(classifier, "preprocess", picky)
    paths, _ = samples
    good = np.asarray(Image.open(paths[0]).convert("RGB"))
    p = v1.predict([good, np.zeros((9, 7, 3), np.uint8), good], k=2)
    assert p.errors[0] is None and p.errors[2] is None
    assert "width 7" in p.errors[1]
    np.testing.assert_array_equal(p.classes[0], p.classes[2])
