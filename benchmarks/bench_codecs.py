"""Codec round-trip throughput per format with 1 and 2 threads, beside a plain Pillow loop.

Full size: 32 images of 224x224x3 per format (photograph-like content). Every
implementation's decoded images and byte sizes must equal the Pillow loop's.
Under --benchmark-disable (CI's correctness mode) 2 images of 32x32 are used.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from instab.environments.registry import parse

import instab.environments.codecs  # noqa: F401,E402  (registers pillow-heif with Pillow for the baseline loop)

FORMATS = {
    "jpeg:q=85": ("JPEG", {"quality": 85}),
    "png": ("PNG", {}),
    "webp": ("WEBP", {}),
    "heif": ("HEIF", {}),
    "avif": ("AVIF", {"max_threads": 1}),
}


def pillow_loop(batch: np.ndarray, fmt: str, opts: dict) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty_like(batch)
    sizes = np.empty(len(batch), np.int64)
    for i, img in enumerate(batch):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt, **opts)
        sizes[i] = buf.tell()
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out, sizes


@pytest.fixture(scope="module")
def batch(request):
    full = not request.config.getoption("benchmark_disable")
    n, size = (32, 224) if full else (2, 32)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs = []
    for _ in range(n):
        f = rng.uniform(1, 6, 3)
        base = np.stack([np.sin(f[0] * xx * 3), np.cos(f[1] * yy * 3), np.sin(f[2] * (xx + yy) * 2)], -1)
        imgs.append(np.clip((base * 0.5 + 0.5) * 230 + rng.normal(0, 8, base.shape), 0, 255))
    return np.stack(imgs).astype(np.uint8)


@pytest.fixture(scope="module")
def expected(batch):
    return {text: pillow_loop(batch, *FORMATS[text]) for text in FORMATS}


@pytest.mark.parametrize("text", list(FORMATS))
@pytest.mark.parametrize("impl", ["pillow-loop", "instab-1-thread", "instab-2-threads"])
def test_codec_roundtrip(benchmark, batch, expected, text, impl):
    benchmark.group = f"codec-{text}-32x224x224x3"
    if impl == "pillow-loop":
        images, sizes = benchmark.pedantic(pillow_loop, (batch, *FORMATS[text]), rounds=3)
    else:
        env = parse(text)
        out = benchmark.pedantic(env.apply, (batch,), {"threads": 1 if impl == "instab-1-thread" else 2}, rounds=3)
        assert out.errors == [None] * len(batch)
        images, sizes = out.images, out.sizes
    np.testing.assert_array_equal(images, expected[text][0])
    np.testing.assert_array_equal(sizes, expected[text][1])
    if benchmark.stats:
        benchmark.extra_info["images_per_s"] = len(batch) / benchmark.stats.stats.min
