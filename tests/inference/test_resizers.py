"""Resizer variants: preprocess(resizer=...), Classifier(resizer=...) and the resize: environment kind."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import instab
from instab import environments, models
from instab.environments.resizers import resize_roundtrip
from instab.inference import RESIZERS, preprocess, resize_plan
from instab.inference.resizers import resize_image

try:
    import cv2
except ImportError:  # CI installs it (test extra); elsewhere the OpenCV cases skip
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise
    cv2 = None

needs_cv2 = pytest.mark.skipif(cv2 is None, reason="opencv-python-headless is not installed")
ST = "mobilenet_v2_1.0_224_int8_st.onnx"
V1 = "mobilenet_v1_0.5_128_uint8_st.onnx"
PILLOW = {
    "pillow-bilinear": Image.Resampling.BILINEAR,
    "pillow-bicubic": Image.Resampling.BICUBIC,
    "pillow-lanczos": Image.Resampling.LANCZOS,
    "pillow-box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}
OPENCV = {"opencv-linear": "INTER_LINEAR", "opencv-area": "INTER_AREA", "opencv-cubic": "INTER_CUBIC",
          "opencv-nearest": "INTER_NEAREST"}


def _params(names):
    return [pytest.param(n, marks=needs_cv2) if n.startswith("opencv") else n for n in names]


def _direct(image: np.ndarray, size: int, crop: float, name: str) -> np.ndarray:
    """The named library called by hand on the whole image, then Image.crop's window."""
    rh, rw, top, left = resize_plan(image.shape[0], image.shape[1], size, crop)
    if name in PILLOW:
        pil = Image.fromarray(image).resize((rw, rh), PILLOW[name])
    else:
        pil = Image.fromarray(cv2.resize(image, (rw, rh), interpolation=getattr(cv2, OPENCV[name])))
    return np.asarray(pil.crop((left, top, left + size, top + size)).convert("RGB"))


@pytest.fixture(scope="module")
def photos(samples_dir: Path) -> tuple[list[np.ndarray], np.ndarray]:
    rows = list(csv.DictReader(open(samples_dir / "labels.csv")))[:16]
    images = [np.asarray(Image.open(samples_dir / r["file"]).convert("RGB")) for r in rows]
    return images, np.array([int(r["class_index"]) for r in rows])


def test_names_are_covered():
    assert set(RESIZERS) == set(PILLOW) | set(OPENCV)
    assert RESIZERS[0] == "pillow-bilinear"


@pytest.mark.parametrize("name", _params(RESIZERS))
def test_each_resizer_matches_its_library(name, photos):
    images, _ = photos
    got = preprocess(images, 224, dtype="uint8", resizer=name, threads=2)
    for i, im in enumerate(images):
        np.testing.assert_array_equal(got[i], _direct(im, 224, 0.875, name), err_msg=f"{name} image {i}")


@pytest.mark.parametrize("name", _params(RESIZERS))
def test_odd_shapes_grey_rgba_and_upscaling(name):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (37, 91, 3), np.uint8)
    small = rng.integers(0, 256, (9, 12, 3), np.uint8)  # upscaled
    grey = rng.integers(0, 256, (50, 40), np.uint8)
    rgba = np.dstack([rgb, rng.integers(0, 256, (37, 91, 1), np.uint8)])
    got = preprocess([rgb, small, grey[:, :, None], rgba], 32, crop=0.8, dtype="uint8", resizer=name, threads=1)
    np.testing.assert_array_equal(got[0], _direct(rgb, 32, 0.8, name))
    np.testing.assert_array_equal(got[1], _direct(small, 32, 0.8, name))
    np.testing.assert_array_equal(got[2], _direct(grey, 32, 0.8, name))  # resized once, then replicated
    np.testing.assert_array_equal(got[3], got[0])  # alpha is dropped before resizing


@pytest.mark.parametrize("name", _params(RESIZERS))
def test_non_square_size_overhangs_with_zeros(name):
    im = np.random.default_rng(4).integers(0, 256, (40, 30, 3), np.uint8)
    got = preprocess([im], (20, 60), crop=1.0, dtype="uint8", resizer=name)[0]
    rh, rw, top, left = resize_plan(40, 30, (20, 60), 1.0)
    assert left < 0  # the window is wider than the resized image
    full = resize_image(im, rh, rw, name)
    want = np.asarray(Image.fromarray(full).crop((left, top, left + 60, top + 20)))
    np.testing.assert_array_equal(got, want)


def test_default_is_todays_preprocess_exactly(photos):
    images, _ = photos
    for kwargs in ({}, {"layout": "nchw", "scale": 1 / 127.5, "offset": -1.0}, {"dtype": "uint8", "crop": 1.0}):
        np.testing.assert_array_equal(
            preprocess(images, 224, resizer="pillow-bilinear", **kwargs), preprocess(images, 224, **kwargs)
        )
    # ... and the Pillow resizer agrees with it: the C++ path is Pillow-exact.
    np.testing.assert_array_equal(preprocess(images, 224, dtype="uint8"), [_direct(im, 224, 0.875, "pillow-bilinear")
                                                                           for im in images])


def test_an_image_already_at_size_passes_unchanged():
    """The non-default path relies on this: crop 1 at the image's own size is a copy."""
    rng = np.random.default_rng(5)
    for shape in ((224, 224, 3), (20, 60, 3), (61, 17, 3)):
        im = rng.integers(0, 256, shape, np.uint8)
        np.testing.assert_array_equal(preprocess([im], shape[:2], crop=1.0, dtype="uint8")[0], im)


@pytest.mark.parametrize("name", _params(["pillow-lanczos", "opencv-linear", "opencv-area"]))
def test_float_output_and_threads_are_bit_identical(name, photos):
    images, _ = photos
    kw = {"layout": "nchw", "scale": (0.1, 0.2, 0.3), "offset": -1.5, "resizer": name}
    ref = preprocess(images, 160, threads=1, **kw)
    assert ref.dtype == np.float32 and ref.shape == (len(images), 3, 160, 160)
    u8 = preprocess(images, 160, dtype="uint8", resizer=name).transpose(0, 3, 1, 2).astype(np.float32)
    scale = np.float32([0.1, 0.2, 0.3])[None, :, None, None]
    np.testing.assert_array_equal(ref, u8 * scale + np.float32(-1.5))
    for t in (2, 3, 8, None):
        np.testing.assert_array_equal(preprocess(images, 160, threads=t, **kw), ref)


def test_bad_names():
    im = np.zeros((8, 8, 3), np.uint8)
    for bad in ("bilinear", "opencv", "", "pillow_bilinear"):
        with pytest.raises(ValueError, match=r"resizer: expected one of pillow-bilinear, .*nearest, got"):
            preprocess([im], 4, resizer=bad)
    with pytest.raises(TypeError, match="resizer:"):
        preprocess([im], 4, resizer=None)
    assert preprocess([im], 4, resizer="Pillow-Bicubic").shape == (1, 4, 4, 3)  # case-insensitive


def test_classifier_option(models_dir):
    model = models.load(models_dir / V1)
    clf = instab.Classifier(model, threads=1, resizer="nearest")
    assert clf.resizer == "nearest" and "resizer='nearest'" in repr(clf)
    assert instab.Classifier(model, threads=1).resizer == "pillow-bilinear"
    with pytest.raises(ValueError, match="resizer: expected one of pillow-bilinear, pillow-bicubic"):
        instab.Classifier(model, resizer="antialias")


@needs_cv2
def test_classifier_resizers_differ_but_stay_sane(models_dir, photos):
    images, labels = photos
    model = models.load(models_dir / ST)
    scores = []
    for name in ("pillow-bilinear", "opencv-linear", "nearest"):
        p = instab.Classifier(model, threads=2, resizer=name).predict(images, k=1, full_scores=True)
        assert p.ok.all()
        assert (p.classes[:, 0] == labels).mean() >= 0.5  # the ST model gets most of these right
        scores.append(p.full_scores)
    assert not np.array_equal(scores[0], scores[1]) and not np.array_equal(scores[0], scores[2])
    result = instab.instability(np.stack(scores, axis=1), labels, k=1)
    assert result.n_images == len(images) and 0.0 <= result.rate < 0.5
    # The Classifier's tensor is preprocess(resizer=...)'s.
    clf = instab.Classifier(model, threads=2, resizer="opencv-linear")
    spec = model.spec
    want = preprocess(images[:3], spec.size, crop=spec.crop, layout=spec.layout, dtype=spec.dtype,
                      resizer="opencv-linear", **({"scale": spec.scale, "offset": spec.offset}
                                                  if spec.dtype == "float32" else {}))
    np.testing.assert_array_equal(clf._preprocess(images[:3]), want)


# ------------------------------------------------------------------ the resize: environment kind


@pytest.mark.parametrize("name", _params(RESIZERS))
def test_environment_is_down_then_up_with_the_library(name, photos):
    images, _ = photos
    env = environments.parse(f"resize:{name},scale=0.25")
    assert str(env) == f"resize:{name},scale=0.25"
    out = env.apply(images[:4], threads=2)
    assert out.errors == [None] * 4 and out.sizes is None
    for im, got in zip(images[:4], out.images, strict=True):
        h, w = im.shape[:2]
        small = (round(w * 0.25), round(h * 0.25))
        if name in PILLOW:
            want = np.asarray(Image.fromarray(im).resize(small, PILLOW[name]).resize((w, h), PILLOW[name]))
        else:
            flag = getattr(cv2, OPENCV[name])
            want = cv2.resize(cv2.resize(im, small, interpolation=flag), (w, h), interpolation=flag)
        np.testing.assert_array_equal(got, want)


def test_environment_text_form_and_errors():
    assert str(environments.parse("resize:nearest")) == "resize:nearest"
    assert str(environments.parse("resize:nearest,scale=0.50")) == "resize:nearest"  # the default
    assert "resize" in environments.known_kinds()
    for text, match in [
        ("resize", "name exactly one resizer"),
        ("resize:nearest,pillow-box", "name exactly one resizer"),
        ("resize:bilinear", "unknown option 'bilinear'.*pillow-bilinear"),
        ("resize:nearest,scale=0", r"scale: must be in \(0, 1\]"),
        ("resize:nearest,scale=1.5", r"scale: must be in \(0, 1\]"),
        ("resize:nearest,scale=x", "parameter scale='x' is invalid"),
        ("resize:nearest,q=3", "unknown parameter 'q'"),
    ]:
        with pytest.raises(ValueError, match=match):
            environments.parse(text)


def test_environment_batches_items_and_threads():
    rng = np.random.default_rng(6)
    batch = rng.integers(0, 256, (5, 33, 47, 3), np.uint8)
    env = environments.parse("resize:pillow-bicubic,scale=0.3")
    ref = env.apply(batch, threads=1)
    assert isinstance(ref.images, np.ndarray) and ref.images.shape == batch.shape
    for t in (2, 4, None):
        np.testing.assert_array_equal(env.apply(batch, threads=t).images, ref.images)
    grey = rng.integers(0, 256, (10, 12, 1), np.uint8)
    rgba = rng.integers(0, 256, (10, 12, 4), np.uint8)
    out = env.apply([grey, None, rgba, np.zeros((3, 3), np.uint8)])
    assert out.images[0].shape == grey.shape and out.images[2].shape == rgba.shape
    assert out.images[1] is None and out.errors[1] == "no input image"
    assert out.images[3] is None and "expected a uint8 HWC image" in out.errors[3]
    # scale=1 gives the image back for the interpolating filters (the size does not change).
    np.testing.assert_array_equal(resize_roundtrip(batch, "pillow-bilinear", 1.0).images, batch)
    # a 1-pixel side still has a 1-pixel thumbnail
    thin = rng.integers(0, 256, (1, 40, 3), np.uint8)
    assert resize_roundtrip([thin], "nearest", 0.1).images[0].shape == thin.shape


def test_missing_opencv_is_one_clear_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    im = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ImportError, match=r"^the opencv-\* resizers need OpenCV: pip install 'instab\[resizers\]'"):
        preprocess([im], 4, resizer="opencv-area")
    with pytest.raises(ImportError, match=r"instab\[resizers\]"):
        environments.parse("resize:opencv-linear")
    assert preprocess([im], 4, resizer="pillow-lanczos").shape == (1, 4, 4, 3)  # the others still work
