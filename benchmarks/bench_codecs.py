"""Codec round-trip throughput per format with 1 and 2 threads, beside a plain Pillow loop.

Full size: 32 images of 224x224x3 per format (photograph-like content). Each row's
decoded images and byte sizes must equal the other implementation's, computed untimed
in the same test: instab's equal the Pillow loop's, the Pillow loop's equal instab's.
Under --benchmark-disable (CI's correctness mode) 2 images of 32x32 are used.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import instab.environments.codecs  # noqa: F401  (registers pillow-heif with Pillow for the baseline loop)
from instab.environments.registry import parse

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


def instab_codec(batch: np.ndarray, text: str, threads: int) -> tuple[np.ndarray, np.ndarray]:
    out = parse(text).apply(batch, threads=threads)
    assert out.errors == [None] * len(batch)
    return out.images, out.sizes


@pytest.mark.parametrize("text", list(FORMATS))
@pytest.mark.parametrize("impl", ["pillow-loop", "instab-1-thread", "instab-2-threads"])
def test_codec_roundtrip(benchmark, batch, text, impl):
    benchmark.group = f"codec-{text}-32x224x224x3"
    if impl == "pillow-loop":
        images, sizes = benchmark.pedantic(pillow_loop, (batch, *FORMATS[text]), rounds=3)
        other = instab_codec(batch, text, threads=1)
    else:
        threads = 1 if impl == "instab-1-thread" else 2
        images, sizes = benchmark.pedantic(instab_codec, (batch, text, threads), rounds=3)
        other = pillow_loop(batch, *FORMATS[text])
    np.testing.assert_array_equal(images, other[0])
    np.testing.assert_array_equal(sizes, other[1])
    if benchmark.stats:
        benchmark.extra_info["images_per_s"] = len(batch) / benchmark.stats.stats.min
