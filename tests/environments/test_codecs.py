"""Codec round trips equal Pillow's own encode/decode; per-item errors; random qualities."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import instab.environments.codecs as C
from instab.environments.registry import parse


def smooth_images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Gradients plus a little noise: compressible like photographs, unlike white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        a, b, c = rng.uniform(0.2, 3, 3)
        base = np.stack([np.sin(a * xx / w * 3 + i), np.cos(b * yy / h * 3), np.sin(c * (xx + yy) / (h + w) * 4)], -1)
        out[i] = np.clip((base * 0.5 + 0.5) * 220 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return out


def pillow_roundtrip(image: np.ndarray, fmt: str, **opts) -> tuple[np.ndarray, int]:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **opts)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")), len(data)


CASES = [
    ("jpeg", "JPEG", {}),
    ("jpeg:q=85", "JPEG", {"quality": 85}),
    ("jpeg:q=50,subsampling=420", "JPEG", {"quality": 50, "subsampling": "4:2:0"}),
    ("jpeg:q=100,subsampling=444", "JPEG", {"quality": 100, "subsampling": "4:4:4"}),
    ("jpeg:q=70,subsampling=422", "JPEG", {"quality": 70, "subsampling": "4:2:2"}),
    ("png", "PNG", {}),
    ("png:level=1", "PNG", {"compress_level": 1}),
    ("webp", "WEBP", {}),
    ("webp:q=60", "WEBP", {"quality": 60}),
    ("webp:lossless", "WEBP", {"lossless": True}),
    ("heif", "HEIF", {}),
    ("heif:q=40", "HEIF", {"quality": 40}),
    ("avif", "AVIF", {"max_threads": 1}),
    ("avif:q=60", "AVIF", {"quality": 60, "max_threads": 1}),
]


@pytest.mark.parametrize("text, pil_format, opts", CASES)
def test_roundtrip_equals_pillow(text, pil_format, opts):
    x = smooth_images(2, 37, 45)
    out = parse(text).apply(x, threads=2)
    assert out.errors == [None, None]
    assert out.images.shape == x.shape and out.images.dtype == np.uint8
    for i in range(len(x)):
        ref, size = pillow_roundtrip(x[i], pil_format, **opts)
        np.testing.assert_array_equal(out.images[i], ref)
        assert out.sizes[i] == size


@pytest.mark.parametrize("fmt", ["png", "webp:lossless"])
def test_lossless_formats_are_exact(fmt):
    x = smooth_images(2, 16, 24, seed=3)
    np.testing.assert_array_equal(parse(fmt).apply(x).images, x)


def test_lossy_quality_orders_size_and_error():
    x = smooth_images(3, 64, 64, seed=1)
    errs, sizes = [], []
    for q in (95, 75, 30):
        out = C.roundtrip(x, "jpeg", quality=q)
        sizes.append(out.sizes.mean())
        errs.append(np.abs(out.images.astype(int) - x).mean())
    assert sizes[0] > sizes[1] > sizes[2]
    assert errs[0] < errs[1] < errs[2]


def test_threads_do_not_change_results():
    x = smooth_images(5, 24, 20, seed=2)
    for text in ("jpeg:q=50..95", "webp:q=70", "avif:q=50", "heif:q=50"):
        a = parse(text).apply(x, seed=3, threads=1)
        b = parse(text).apply(x, seed=3, threads=3)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.sizes, b.sizes)


def test_random_quality_is_keyed_by_seed_and_index():
    q = C.draw_qualities((50, 95), 200, seed=7, first_index=0)
    assert min(q) >= 50 and max(q) <= 95 and len(set(q)) > 30
    assert C.draw_qualities((50, 95), 50, seed=7, first_index=100) == q[100:150]
    assert C.draw_qualities((50, 95), 200, seed=8, first_index=0) != q
    assert C.draw_qualities(80, 3, seed=1, first_index=0) == [80, 80, 80]
    x = smooth_images(4, 16, 16)
    whole = parse("jpeg:q=20..90").apply(x, seed=5)
    part = parse("jpeg:q=20..90").apply(x[2:], seed=5, first_index=2)
    np.testing.assert_array_equal(part.images, whole.images[2:])
    for i, qi in enumerate(C.draw_qualities((20, 90), 4, 5, 0)):
        assert whole.sizes[i] == C.roundtrip(x[i : i + 1], "jpeg", quality=qi).sizes[0]


def test_failing_item_gives_per_item_error():
    rgb = smooth_images(2, 12, 10)
    rgba = np.dstack([rgb[0], np.full((12, 10), 200, np.uint8)])
    out = C.roundtrip([rgb[0], rgba, None, rgb[1]], "jpeg", quality=80, threads=2)
    assert out.errors[0] is None and out.errors[3] is None
    assert "RGBA" in out.errors[1] and out.images[1] is None and out.sizes[1] == -1
    assert out.errors[2] == "no input image" and out.images[2] is None
    np.testing.assert_array_equal(out.images[3], C.roundtrip(rgb[1:], "jpeg", quality=80).images[0])
    batch = C.roundtrip(np.stack([rgba, rgba]), "jpeg")
    assert all("RGBA" in e for e in batch.errors) and not batch.images.any()


def test_channels_and_sizes_are_kept():
    rng = np.random.default_rng(0)
    items = [rng.integers(0, 256, s, dtype=np.uint8) for s in ((5, 7, 1), (1, 1, 3), (9, 3, 4), (30, 17, 3))]
    for fmt in ("png", "webp", "heif", "avif"):
        out = C.roundtrip(items, fmt)
        for a, b, e in zip(items, out.images, out.errors, strict=True):
            assert e is None, (fmt, e)
            assert b.shape == a.shape
    png = C.roundtrip(items, "png")
    for a, b in zip(items, png.images, strict=True):
        np.testing.assert_array_equal(a, b)


def test_encode_decode_functions():
    x = smooth_images(1, 20, 30)[0]
    data = C.encode(x, "webp", quality=90)
    assert data[:4] == b"RIFF"
    assert C.decode(data).shape == x.shape
    assert C.decode(data, channels=1).shape == (20, 30, 1)
    with pytest.raises(ValueError, match="fmt"):
        C.encode(x, "gif")
    with pytest.raises(ValueError, match="image"):
        C.encode(x.astype(np.float32), "png")
    with pytest.raises(ValueError, match="channels"):
        C.decode(data, channels=2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fmt": "jpeg", "quality": 0}, "1..100"),
        ({"fmt": "jpeg", "quality": (90, 50)}, "lo <= hi"),
        ({"fmt": "jpeg", "quality": 50.5}, "int"),
        ({"fmt": "png", "quality": 50}, "no quality"),
        ({"fmt": "jpeg", "subsampling": "411"}, "subsampling"),
        ({"fmt": "webp", "quality": 50, "lossless": True}, "lossless"),
        ({"fmt": "tiff"}, "unknown format"),
        ({"fmt": "png", "threads": -1}, "threads"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        C.roundtrip(smooth_images(1, 4, 4), **kwargs)


def test_bad_images():
    with pytest.raises(TypeError, match="uint8"):
        C.roundtrip(np.zeros((1, 4, 4, 3), np.float32), "png")
    # A bad item in a list is that item's error; the others are processed.
    out = C.roundtrip([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)], "png")
    assert out.errors[0] is None and out.errors[1].startswith("images[1]: expected a uint8 HWC image")
    assert out.images[1] is None and out.sizes[1] == -1
