"""JPEG decoder throughput per ``decode:`` variant on the shared photos (group: decoders).

Full size: the first 32 shared ImageNet photos (about 500x375), each encoded once untimed
(Pillow, quality 90, 4:2:0); each row times one decoder over those bytes on one thread.
Each row's output is checked against Pillow's decode of the same bytes, untimed:
``pillow``, ``opencv`` and libjpeg-turbo islow/fancy exactly (all are libjpeg-turbo with its
defaults); the ifast IDCT within a mean absolute difference of 1.5 levels and at most 16
on any value (measured on the 32 photos: 1.14 and 9); simple (non-fancy) chroma upsampling
within 4 levels on average (measured 2.7; it differs by tens of levels at chroma edges, so
no maximum); the half-size draft against Pillow's decode reduced by 2x2 box averaging
within 3 levels on average (measured 2.0). Under --benchmark-disable (CI's correctness mode) 2 photos are used.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instab._shared.decode import decode
from instab.environments.decoders import decoder_names
from instab.environments.registry import parse

# (mean, max) absolute difference in levels allowed against Pillow's decode; None: must be equal.
TOLERANCE: dict[str, tuple[float, int] | None] = {
    "decode:pillow": None,
    "decode:opencv": None,
    "decode:libjpeg-turbo,dct=islow,upsampling=fancy": None,
    "decode:libjpeg-turbo,dct=ifast,upsampling=fancy": (1.5, 16),
    "decode:libjpeg-turbo,dct=islow,upsampling=simple": (4.0, 255),
    "decode:libjpeg-turbo,dct=ifast,upsampling=simple": (4.0, 255),
    "decode:pillow-draft": (3.0, 255),
}


@pytest.fixture(scope="module")
def encoded(request, samples_dir: Path) -> list[bytes]:
    n = 2 if request.config.getoption("benchmark_disable") else 32
    paths = sorted(samples_dir.glob("*.JPEG"))[:n]
    out = []
    for p in paths:
        buf = io.BytesIO()
        Image.fromarray(decode(p)).save(buf, "JPEG", quality=90, subsampling="4:2:0")
        out.append(buf.getvalue())
    return out


def pillow_reference(data: bytes, half: bool) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
        return np.asarray(rgb.reduce(2) if half else rgb)


@pytest.mark.parametrize("text", decoder_names())
def test_decoder_throughput(benchmark, encoded: list[bytes], text: str) -> None:
    assert set(TOLERANCE) == set(decoder_names())
    benchmark.group = f"decoders-{len(encoded)}-photos"
    decoder = parse(text).settings.decoder_function()
    outputs = benchmark.pedantic(lambda: [decoder(d, 3) for d in encoded], rounds=3)
    tol = TOLERANCE[text]
    for data, out in zip(encoded, outputs, strict=True):
        ref = pillow_reference(data, half="draft" in text)
        assert out.shape == ref.shape
        if tol is None:
            np.testing.assert_array_equal(out, ref)
        else:
            diff = np.abs(out.astype(np.int16) - ref)
            assert diff.mean() <= tol[0] and diff.max() <= tol[1]
