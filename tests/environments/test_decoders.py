"""``decode:`` environments: each decoder equals its library's own call on the same bytes; errors are clear."""

from __future__ import annotations

import importlib
import io
import os
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

import instab.environments.decoders as D
from instab._shared.decode import decode
from instab.environments.registry import parse


def need(name: str) -> ModuleType:
    """An optional decoder library: CI must have it (the test extra), elsewhere the test skips."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{name} is missing: CI installs instab[test], which includes it")
        pytest.skip(f"{name} is not installed (pip install 'instab[decoders]')")


def photo_like(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        base = np.stack([np.sin(xx / w * 5 + i), np.cos(yy / h * 4), np.sin((xx + yy) / (h + w) * 7)], -1)
        out[i] = np.clip((base * 0.5 + 0.5) * 220 + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    return out


def jpeg_bytes(image: np.ndarray, q: int = 90, subsampling: str = "4:2:0") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=q, subsampling=subsampling)
    return buf.getvalue()


def independent(decoder: str, data: bytes) -> np.ndarray:
    """The library's own decode of ``data``, written without instab."""
    if decoder == "pillow":
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    if decoder == "pillow-draft":
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", (im.size[0] // 2, im.size[1] // 2))
        return np.asarray(im.convert("RGB"))
    if decoder == "opencv":
        cv2 = need("cv2")
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    sj = need("simplejpeg")
    dct, _, up = decoder.partition("/")
    return sj.decode_jpeg(data, colorspace="RGB", fastdct=dct == "ifast", fastupsample=up == "simple")


CASES = [
    ("decode:pillow", "pillow"),
    ("decode:pillow-draft", "pillow-draft"),
    ("decode:opencv", "opencv"),
    ("decode:libjpeg-turbo", "islow/fancy"),
    ("decode:libjpeg-turbo,dct=ifast", "ifast/fancy"),
    ("decode:libjpeg-turbo,upsampling=simple", "islow/simple"),
    ("decode:libjpeg-turbo,dct=ifast,upsampling=simple", "ifast/simple"),
]


@pytest.mark.parametrize(("text", "decoder"), CASES)
def test_each_decoder_equals_its_library_on_the_same_bytes(text: str, decoder: str) -> None:
    images = photo_like(3, 37, 50)
    out = parse(text).apply(list(images), threads=2)
    assert out.errors == [None] * 3
    for i, im in enumerate(images):
        data = jpeg_bytes(im)
        assert out.sizes is not None and out.sizes[i] == len(data)
        np.testing.assert_array_equal(out.images[i], independent(decoder, data))


def test_pillow_is_pillows_default_decode_and_instabs() -> None:
    images = photo_like(2, 40, 48, seed=3)
    out = parse("decode:pillow,q=75,subsampling=444").apply(images)
    for i, im in enumerate(images):
        data = jpeg_bytes(im, 75, "4:4:4")
        with Image.open(io.BytesIO(data)) as pil:
            np.testing.assert_array_equal(out.images[i], np.asarray(pil.convert("RGB")))
        np.testing.assert_array_equal(out.images[i], decode(data))


def test_draft_halves_the_size_and_a_batch_gets_per_item_errors() -> None:
    images = photo_like(2, 37, 50)
    out = parse("decode:pillow-draft").apply(list(images))
    assert [im.shape for im in out.images] == [(19, 25, 3)] * 2
    batch = parse("decode:pillow-draft").apply(images)
    assert all(e is not None and "pass a list" in e for e in batch.errors)
    assert not batch.images.any()


def chroma_edge() -> np.ndarray:
    """Saturated red and blue stripes whose edges fall inside 2x2 chroma blocks."""
    im = np.zeros((32, 32, 3), np.uint8)
    for x0 in range(1, 32, 6):
        im[:, x0 : x0 + 3] = (255, 0, 0)
        im[:, x0 + 3 : x0 + 6] = (0, 0, 255)
    return im


def test_fancy_and_simple_upsampling_differ_on_a_chroma_edge() -> None:
    need("simplejpeg")
    im = chroma_edge()[None]
    fancy = parse("decode:libjpeg-turbo,upsampling=fancy").apply(im).images
    simple = parse("decode:libjpeg-turbo,upsampling=simple").apply(im).images
    assert isinstance(fancy, np.ndarray) and isinstance(simple, np.ndarray)
    assert np.abs(fancy.astype(int) - simple.astype(int)).max() > 10


@pytest.mark.parametrize(("text", "message"), [
    ("decode", "name one decoder"),
    ("decode:pillow,opencv", "name one decoder"),
    ("decode:libjpeg", "unknown decoder 'libjpeg'"),
    ("decode:pillow,dct=ifast", "only for libjpeg-turbo"),
    ("decode:opencv,upsampling=simple", "only for libjpeg-turbo"),
    ("decode:libjpeg-turbo,dct=float", "dct=float is not available"),
    ("decode:libjpeg-turbo,dct=fast", "dct: expected one of islow, ifast"),
    ("decode:libjpeg-turbo,upsampling=nearest", "upsampling: expected one of fancy, simple"),
    ("decode:pillow,q=0", "q: expected an integer in 1..100"),
    ("decode:pillow,q=high", "parameter q='high' is invalid"),
    ("decode:pillow,subsampling=411", "subsampling: expected 444, 422 or 420"),
    ("decode:pillow,quality=90", "unknown parameter 'quality'"),
])
def test_bad_names_and_parameters_are_one_value_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^environment decode") as info:
        parse(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_library_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> ModuleType:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(D.importlib, "import_module", missing)
    with pytest.raises(ValueError, match=r"simplejpeg is not installed .*instab\[decoders\]"):
        parse("decode:libjpeg-turbo")
    parse("decode:pillow")  # Pillow needs nothing optional


def test_canonical_text_and_equality() -> None:
    assert str(parse("decode:libjpeg-turbo")) == "decode:libjpeg-turbo,dct=islow,upsampling=fancy"
    assert parse("decode:libjpeg-turbo,upsampling=fancy") == parse("decode:libjpeg-turbo,dct=islow")
    assert str(parse("decode:opencv,q=90,subsampling=420")) == "decode:opencv"
    assert str(parse("decode:pillow,subsampling=444,q=70")) == "decode:pillow,q=70,subsampling=444"
    assert [str(parse(t)) for t in D.decoder_names()] == D.decoder_names()


def test_per_item_errors_and_the_rest_go_on() -> None:
    good = photo_like(1, 16, 16)[0]
    rgba = np.zeros((16, 16, 4), np.uint8)
    out = parse("decode:opencv").apply([good, None, rgba, np.zeros((4, 4), np.float32)])
    assert out.errors[0] is None and out.images[0] is not None
    assert out.errors[1] == "no input image"
    assert out.errors[2] is not None and out.errors[2].startswith("decode:opencv: ")
    assert out.errors[3] is not None and "expected a uint8 HWC image" in out.errors[3]
    assert out.images[1:] == [None, None, None]
    assert out.sizes is not None and out.sizes.tolist()[1:] == [-1, -1, -1]


@pytest.mark.parametrize("text", [t for t, _ in CASES])
def test_grey_images_stay_grey(text: str) -> None:
    grey = photo_like(1, 24, 20)[0][:, :, :1].copy()
    out = parse(text).apply([grey])
    assert out.errors == [None]
    got = out.images[0]
    assert got is not None and got.ndim == 3 and got.shape[-1] == 1


def test_results_do_not_depend_on_threads_or_seed() -> None:
    images = photo_like(5, 20, 24)
    env = parse("decode:libjpeg-turbo,dct=ifast")
    a = env.apply(images, threads=1, seed=0)
    b = env.apply(images, threads=3, seed=7, first_index=2)
    np.testing.assert_array_equal(a.images, b.images)
    with pytest.raises(ValueError):
        env.apply(images, threads=0)
