"""Per-image latency of the Coral MobileNetV2 in ONNX Runtime vs LiteRT (XNNPACK) vs LiteRT (reference kernels).

The same weights: ``mobilenet_v2_1.0_224_uint8_coral.tflite`` as phones run it (LiteRT,
the XNNPACK delegate or the reference kernels) and its tflite2onnx conversion in ONNX
Runtime. Each runs batch 1 on already-preprocessed tensors (its classifier's own
preprocessing, untimed), all cores; the benchmark's time divided by the image count is
the per-image latency.

Every row's top-1 is checked against the other runtimes', computed untimed in the same
test: ONNX Runtime and LiteRT XNNPACK agree on at least 95% of images (measured: all 200 of
the first 200 shared photos), the reference kernels with either on at least 90% (their integer
rounding differs; measured: 97.5% on those 200).
Full mode: 32 images, 3 rounds; --benchmark-disable: 4 images.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import instab
from tests._support.litert import require_litert

CORAL = "mobilenet_v2_1.0_224_uint8_coral"
RUNTIMES = {"ort": (".onnx", "xnnpack"), "litert-xnnpack": (".tflite", "xnnpack"),
            "litert-reference": (".tflite", "reference")}
AGREE = {frozenset({"ort", "litert-xnnpack"}): 0.95}  # a pair with the reference kernels: 0.90


@pytest.fixture(scope="module")
def files(request, samples_dir: Path) -> list[Path]:
    full = not request.config.getoption("benchmark_disable")
    rows = list(csv.DictReader(open(samples_dir / "labels.csv")))
    return [samples_dir / r["file"] for r in rows[: 32 if full else 4]]


@pytest.fixture(scope="module")
def ready(files, models_dir):
    """Per runtime: its classifier and its preprocessed tensors."""
    require_litert()
    out = {}
    for name, (suffix, kernels) in RUNTIMES.items():
        clf = instab.Classifier(models_dir / f"{CORAL}{suffix}", kernels=kernels)
        out[name] = (clf, clf._preprocess([np.asarray(Image.open(p).convert("RGB")) for p in files]))
    return out


def top1_batch1(clf: instab.Classifier, tensor: np.ndarray) -> np.ndarray:
    """The classifier's own session, one image per run: top-1 ImageNet classes."""
    spec = clf.spec
    raw = [clf.session.run([spec.output_name], {spec.input_name: tensor[i : i + 1]})[0] for i in range(len(tensor))]
    return np.concatenate(raw).reshape(len(tensor), -1).argmax(axis=1) - spec.class_offset


def _run(benchmark, fn):
    if benchmark.disabled:
        return benchmark(fn)
    return benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_runtime_latency(benchmark, ready, files, runtime):
    benchmark.group = "runtimes-coral-per-image"
    benchmark.extra_info["images"] = len(files)
    clf, tensor = ready[runtime]
    got = _run(benchmark, lambda: top1_batch1(clf, tensor))
    for other, (oclf, otensor) in ready.items():
        if other != runtime:
            agree = float((got == top1_batch1(oclf, otensor)).mean())
            need = AGREE.get(frozenset({runtime, other}), 0.90)
            assert agree >= need, f"{runtime} vs {other}: top-1 agrees on {agree:.3f} < {need}"
