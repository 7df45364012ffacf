"""LiteRT (.tflite) models through instab: loading, the Classifier, bad input.

The reference is an independent loop: Pillow decodes and resizes (bilinear, shorter side
to 256, centre crop 224, written here by hand), and ``ai_edge_litert``'s Interpreter runs
the shipped Coral .tflite one image at a time.
"""

from __future__ import annotations

import builtins
import csv

import numpy as np
import pytest
from PIL import Image

import instab
from instab import models
from instab.inference.litert import LiteRTSession
from tests._support.litert import require_litert

CORAL_TFLITE = "mobilenet_v2_1.0_224_uint8_coral.tflite"


@pytest.fixture(scope="module")
def tflite_path(models_dir):
    require_litert()
    return models_dir / CORAL_TFLITE


def _centre_crop(path, size: int = 224, crop: float = 0.875) -> np.ndarray:
    s = round(size / crop)
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        nw, nh = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
        left, top = round((nw - size) / 2), round((nh - size) / 2)
        return np.asarray(im.resize((nw, nh), Image.BILINEAR).crop((left, top, left + size, top + size)))


def _direct_scores(tflite_path, crops: list[np.ndarray], ref: bool = False) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"experimental_op_resolver_type": OpResolverType.BUILTIN_REF} if ref else {}
    it = Interpreter(model_path=str(tflite_path), **kwargs)
    it.allocate_tensors()
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    scale, zero = out["quantization"]
    rows = []
    for x in crops:
        it.set_tensor(inp["index"], x[None])
        it.invoke()
        q = it.get_tensor(out["index"])[0].astype(np.float32)
        rows.append((q - zero) * np.float32(scale))
    return np.stack(rows)[:, 1:]  # column 0 is the background class


@pytest.fixture(scope="module")
def photos(samples_dir):
    rows = list(csv.DictReader(open(samples_dir / "labels.csv")))[:32]
    return [samples_dir / r["file"] for r in rows]


def test_load_reads_the_spec_from_the_tflite(tflite_path):
    m = models.load(tflite_path)
    assert isinstance(m, models.TFLiteModel) and m.name == "mobilenet_v2_1.0_224_uint8_coral"
    s = m.spec
    assert (s.layout, s.dtype, s.size, s.class_offset, s.num_classes) == ("nhwc", "uint8", 224, 1, 1000)
    assert s.output_quant == (0.00390625, 0) and s.output_kind == "probabilities"
    assert m.serialized() == tflite_path.read_bytes()


@pytest.mark.parametrize("kernels", ["xnnpack", "reference"])
def test_classifier_equals_a_direct_interpreter_loop(kernels, tflite_path, photos):
    photos = photos if kernels == "xnnpack" else photos[:8]  # the reference kernels take ~0.2 s an image
    crops = [_centre_crop(p) for p in photos]
    theirs = _direct_scores(tflite_path, crops, ref=kernels == "reference")
    pred = instab.Classifier(tflite_path, kernels=kernels, batch_size=8).predict(photos, k=1, full_scores=True)
    assert pred.ok.all()
    np.testing.assert_array_equal(pred.full_scores, theirs)
    assert (pred.classes[:, 0] == theirs.argmax(axis=1)).all()


def test_same_weights_in_onnx_runtime_mostly_agree(tflite_path, photos):
    litert = instab.Classifier(tflite_path).predict(photos, k=1).classes[:, 0]
    ort_top1 = instab.Classifier("mobilenet-v2-coral").predict(photos, k=1).classes[:, 0]
    assert (litert == ort_top1).mean() >= 0.9  # the tflite2onnx conversion of the same weights


def test_session_runs_a_batch_and_reports_shapes(tflite_path):
    sess = LiteRTSession(models.load(tflite_path), threads=1)
    assert sess.get_inputs()[0].shape == [1, 224, 224, 3] and sess.get_outputs()[0].shape == [1, 1001]
    (out,) = sess.run(None, {"x": np.zeros((3, 224, 224, 3), np.uint8)})
    assert out.shape == (3, 1001) and out.dtype == np.uint8


def test_bad_input(tflite_path, tmp_path):
    m = models.load(tflite_path)
    with pytest.raises(ValueError, match="kernels: expected one of"):
        instab.Classifier(m, kernels="gpu")
    with pytest.raises(ValueError, match="provider: a .tflite model runs on LiteRT"):
        instab.Classifier(m, provider="cuda")
    with pytest.raises(ValueError, match="embeddings: not available for a .tflite model"):
        instab.Classifier(m).predict(np.zeros((1, 8, 8, 3), np.uint8), embeddings=True)
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flat buffer")
    with pytest.raises(ValueError, match="is not a readable TFLite model"):
        models.load(bad)
    with pytest.raises(FileNotFoundError, match="nothere.tflite"):
        models.load(tmp_path / "nothere.tflite")
    p = instab.Classifier(m).predict([b"not an image"], k=1)
    assert p.classes.tolist() == [[-1]] and not p.ok.any()


def test_without_litert_one_line_says_how_to_install(models_dir, monkeypatch):
    real_import = builtins.__import__

    def no_litert(name, *args, **kwargs):
        if name.startswith("ai_edge_litert"):
            raise ImportError("No module named 'ai_edge_litert'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_litert)
    with pytest.raises(ImportError, match=r"install instab\[litert\]") as info:
        models.load(models_dir / CORAL_TFLITE)
    assert "\n" not in str(info.value)
