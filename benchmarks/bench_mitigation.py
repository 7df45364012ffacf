"""Stability-training throughput (images/s) per noise scheme, as the mitigation study runs it.

One training batch = make x' (noise from the C++ core: Gaussian via
``instab.environments.distort``, ``distort:phone``; the paired schemes look up the second
device's cached features) + the frozen backbone on x' + one head step (KL loss,
Adam, last two layers of the dequantized MobileNetV2). Beside it in the same
group: the same step through issue 7's full training graph (backbone inside the
graph, same trainable set) — the two must give the same loss — and a step of the
whole network (every layer trainable, the study's ``--trainable all``). A second group
times the Gaussian noise of the C++ core against the numpy generator (per-image
``default_rng``) (different generators: the noise
statistics must agree).

Full size: batch 32. Correctness mode (--benchmark-disable): batch 2.
"""

from __future__ import annotations

import numpy as np
import pytest

from instab.studies.mitigation.noise import GaussianNoise, make_scheme
from instab.train import Trainer, build_training_graph
from instab.train.head import FeatureRunner, split_model


def numpy_gaussian(sigma):
    """The numpy baseline: per-image generator, float32 normal draws, rounded and clipped to uint8."""

    def apply(images, seed, first_index):
        out = np.empty_like(images)
        for i in range(len(images)):
            rng = np.random.default_rng([seed, first_index + i])
            noisy = images[i].astype(np.float32) + rng.standard_normal(images[i].shape, np.float32) * (sigma * 255)
            out[i] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        return out

    return apply


SCHEMES = ("gaussian:sigma=0.05", "distortion", "two-images", "subsample:n=10", "devices", "none")


@pytest.fixture(scope="module")
def case(request):
    from instab import models

    full = not request.config.getoption("benchmark_disable")
    models_dir = request.getfixturevalue("models_dir")
    model = models.dequantize(models.load(models_dir / "mobilenet_v2_1.0_224_int8_st.onnx"))
    n = 32 if full else 2
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    second = np.clip(x.astype(np.int16) + rng.integers(-12, 13, x.shape), 0, 255).astype(np.uint8)
    third = np.clip(x.astype(np.int16) - rng.integers(0, 20, x.shape), 0, 255).astype(np.uint8)
    labels = rng.integers(0, 1000, n).astype(np.int64)
    split = split_model(model.proto, "last:2")
    backbone = FeatureRunner(split.backbone)
    fx, fsecond = backbone(x), backbone(second)
    return {"model": model, "split": split, "backbone": backbone, "x": x, "second": second, "third": third,
            "labels": labels, "fx": fx, "fsecond": fsecond, "fviews": np.stack([fx, fsecond, backbone(third)])}


def _head_step(case, scheme_text):
    scheme = make_scheme(scheme_text, second=case["second"], labels=case["labels"],
                         views=[case["x"], case["second"], case["third"]])
    loss = "ce" if scheme.name == "none" else "kl"
    trainer = Trainer(build_training_graph(case["split"].head, loss=loss, alpha=1.0, optimizer="adam", trainable="all"))
    x, idx = case["x"], np.arange(len(case["x"]))
    draw = [0]

    def step():
        draw[0] += 1
        fx = case["fx"]
        if scheme.name == "devices":  # x and x' both from cached device features, a pair drawn per image
            a, b = scheme.choose(idx, 0, draw[0])
            fx, noisy = case["fviews"][a, idx], case["fviews"][b, idx]
        elif scheme.name == "none":
            noisy = None
        elif scheme.name == "two-images":
            noisy = case["fsecond"][idx]
        elif scheme.name == "subsample":
            noisy = case["fsecond"][scheme.choose(idx, 0, draw[0])]
        else:
            noisy = case["backbone"](scheme.perturb(x, idx, 0, draw[0]))
        return trainer.step(fx, noisy, case["labels"], 1e-5)

    return step


@pytest.mark.parametrize("scheme", SCHEMES)
def test_head_step(benchmark, case, scheme):
    benchmark.group = "mitigation-train-step"
    benchmark.extra_info["images"] = len(case["x"])
    step = _head_step(case, scheme)
    r = benchmark(step)
    assert np.isfinite(r.loss)
    if not benchmark.disabled:
        benchmark.extra_info["images_per_s"] = len(case["x"]) / benchmark.stats.stats.mean


def test_full_graph_step(benchmark, case):
    """The same two-images KL step through the full graph (last two layers trainable): same loss as the head."""
    benchmark.group = "mitigation-train-step"
    full = Trainer(
        build_training_graph(case["model"].proto, loss="kl", alpha=1.0, optimizer="adam", trainable="last:2")
    )
    head = _head_step(case, "two-images")
    r_head = head()
    r_full = full.step(case["x"], case["second"], case["labels"], 1e-5)
    np.testing.assert_allclose([r_full.loss, r_full.ce, r_full.stability], [r_head.loss, r_head.ce, r_head.stability],
                               rtol=1e-4, atol=1e-6)
    r = benchmark(lambda: full.step(case["x"], case["second"], case["labels"], 1e-5))
    assert np.isfinite(r.loss)
    if not benchmark.disabled:
        benchmark.extra_info["images_per_s"] = len(case["x"]) / benchmark.stats.stats.mean


@pytest.fixture(scope="module")
def gray(request):
    n = 2 if request.config.getoption("benchmark_disable") else 32
    return np.full((n, 224, 224, 3), 128, np.uint8)  # mid-gray: no clipping at sigma 0.1


def _check_noise(noisy, sigma):
    d = noisy.astype(np.float64) - 128.0
    assert abs(d.mean()) < 0.5
    assert abs(d.std() / (sigma * 255) - 1) < 0.03


def test_gaussian_core(benchmark, gray):
    benchmark.group = "mitigation-gaussian-noise"
    s = GaussianNoise(0.1)
    out = benchmark(lambda: s.perturb(gray, np.arange(len(gray)), 0, 0))
    _check_noise(out, 0.1)


def test_gaussian_numpy(benchmark, gray):
    benchmark.group = "mitigation-gaussian-noise"
    f = numpy_gaussian(0.1)
    out = benchmark(lambda: f(gray, 0, 0))
    _check_noise(out, 0.1)


def test_whole_network_step(benchmark, case):
    """One KL step with every layer trainable (the study's --trainable all), on the images themselves."""
    benchmark.group = "mitigation-train-step"
    full = Trainer(build_training_graph(case["model"].proto, loss="kl", alpha=1.0, optimizer="adam", trainable="all"))
    assert set(full.graph.params) == {p for layer in full.graph.layers for p in layer}  # every layer trains
    r = benchmark(lambda: full.step(case["x"], case["second"], case["labels"], 1e-5))
    assert np.isfinite(r.loss) and r.stability > 0
    if not benchmark.disabled:
        benchmark.extra_info["images_per_s"] = len(case["x"]) / benchmark.stats.stats.mean
