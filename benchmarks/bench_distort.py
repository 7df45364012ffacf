"""The fused distortion chain and Gaussian noise beside numpy and OpenCV baselines.

Full sizes (the issue's): a 64x224x224x3 uint8 batch through brightness,
contrast, saturation, hue, gamma and Gaussian noise. Baselines in the same group:
- the numpy reference (tests/reference.py), whose output must equal the kernel's;
- the same operations in OpenCV (float32 HSV, cv2.randn noise), equal within a
  documented tolerance: its HSV arithmetic differs in the last bits and its noise
  comes from another generator, so without noise at most 1% of values may differ,
  each by at most 2 levels, and with noise the residual against the kernel's
  noise-free output must have the noise's standard deviation within 5%.
Gaussian noise alone is compared with numpy's default generator (PCG64 normals):
each side's residual (output - input, on mid-range pixels that never clip) must have
the other side's mean within 0.003 and standard deviation within 3%; the generators
differ, so only the statistics can agree. Every row is checked against the other
implementation's output, computed untimed in the same test.
Under --benchmark-disable (CI's correctness mode) the batch shrinks to 4x32x32x3.
"""

from __future__ import annotations

import numpy as np
import pytest

import instab.environments.distort as D
from instab.environments.registry import mix_seed
from tests import reference as R

try:
    import cv2  # type: ignore[no-redef]
except ImportError:  # OpenCV is an optional baseline
    cv2 = None

SIGMA = 0.05
# (kind, parameter) of the chain; the seed of op j is mix_seed(SEED, j) as in D.apply.
CHAIN = [("brightness", 0.08), ("contrast", 1.2), ("saturation", 1.3), ("hue", 0.04), ("gamma", 0.9),
         ("gaussian", SIGMA)]
SEED = 1234


def chain_ops(noise: bool = True) -> list[D.Op]:
    names = {"brightness": "delta", "contrast": "factor", "saturation": "factor", "hue": "delta", "gamma": "g",
             "gaussian": "sigma"}
    return [D.Op.make(k, **{names[k]: v}) for k, v in CHAIN if noise or k != "gaussian"]


def reference_ops(noise: bool = True) -> list[tuple]:
    return [(op.kind, mix_seed(SEED, j), [op.ranges[0][0], 0.0], [op.ranges[0][1], 0.0])
            for j, op in enumerate(chain_ops(noise))]


def opencv_chain(batch: np.ndarray, noise: bool = True) -> np.ndarray:
    """The same chain with OpenCV calls, image by image (float32, values in [0, 1])."""
    (_, bright), (_, factor), (_, sat), (_, hue_delta), (_, g), _ = CHAIN
    out = np.empty_like(batch)
    one = (1.0, 1.0, 1.0, 0.0)
    zero = (0.0, 0.0, 0.0, 0.0)
    noise_buf = np.empty(batch.shape[1:], np.float32)
    for i, img in enumerate(batch):
        x = img.astype(np.float32)
        x = cv2.multiply(x, (1 / 255, 1 / 255, 1 / 255, 0))
        x = cv2.max(cv2.min(cv2.add(x, (bright, bright, bright, 0)), one), zero)
        m = cv2.mean(x)
        x = cv2.add(cv2.multiply(x, (factor, factor, factor, 0)),
                    tuple(mk * (1 - factor) for mk in m[:3]) + (0,))
        x = cv2.max(cv2.min(x, one), zero)
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # H in degrees
        h, s, v = cv2.split(hsv)
        s = cv2.min(cv2.multiply(s, sat), 1.0)
        x = cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2RGB)
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
        h, s, v = cv2.split(hsv)
        h = cv2.add(h, 360.0 * hue_delta)
        h = cv2.subtract(h, cv2.threshold(h, 360.0 - 1e-4, 360.0, cv2.THRESH_BINARY)[1])
        x = cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2RGB)
        x = cv2.pow(cv2.max(x, zero), g)
        if noise:
            cv2.randn(noise_buf, (0.0, 0.0, 0.0), (SIGMA, SIGMA, SIGMA))
            x = cv2.max(cv2.min(cv2.add(x, noise_buf), one), zero)
        out[i] = cv2.convertScaleAbs(x, alpha=255.0)
    return out


@pytest.fixture(scope="module")
def batch(request):
    full = not request.config.getoption("benchmark_disable")
    shape = (64, 224, 224, 3) if full else (4, 32, 32, 3)
    rng = np.random.default_rng(0)
    # Smooth content with texture, so HSV and contrast see photograph-like values.
    base = rng.integers(0, 256, (shape[0], 8, 8, 3), dtype=np.uint8)
    up = np.repeat(np.repeat(base, shape[1] // 8, axis=1), shape[2] // 8, axis=2)
    return np.clip(up.astype(np.int16) + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def expected(batch):
    return R.distort_chain(batch, reference_ops(), 0, "uint8")[0]


@pytest.mark.benchmark(group="distort-chain-64x224x224x3")
@pytest.mark.parametrize("impl", ["numpy-reference", "core-1-thread", "core-2-threads", "opencv-1-thread"])
def test_chain(benchmark, batch, expected, impl):
    if impl == "numpy-reference":
        out = benchmark.pedantic(lambda: R.distort_chain(batch, reference_ops(), 0, "uint8")[0], rounds=1)
        np.testing.assert_array_equal(out, D.apply(batch, chain_ops(), SEED))
    elif impl.startswith("core"):
        threads = 1 if impl == "core-1-thread" else 2
        out = benchmark(D.apply, batch, chain_ops(), SEED, threads=threads)
        np.testing.assert_array_equal(out, expected)
    else:
        if cv2 is None:
            pytest.skip("OpenCV (cv2) is not installed")
        cv2.setNumThreads(1)
        out = benchmark(opencv_chain, batch)
        quiet = D.apply(batch, chain_ops(noise=False), SEED)
        diff = opencv_chain(batch, noise=False).astype(int) - quiet
        assert np.abs(diff).max() <= 2 and (diff != 0).mean() <= 0.01
        resid = (out.astype(np.float64) - quiet) / 255
        ours = (expected.astype(np.float64) - quiet) / 255
        assert abs(resid.std() / ours.std() - 1) < 0.05 and abs(resid.mean() - ours.mean()) < 0.002


def numpy_gaussian_noise(batch: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = batch.astype(np.float32) / np.float32(255)
    x += np.float32(sigma) * rng.standard_normal(batch.shape, dtype=np.float32)
    np.clip(x, 0, 1, out=x)
    return (x * np.float32(255) + np.float32(0.5)).astype(np.uint8)


@pytest.mark.benchmark(group="gaussian-noise-64x224x224x3")
@pytest.mark.parametrize("impl", ["numpy-generator", "core-1-thread", "core-2-threads"])
def test_gaussian_noise(benchmark, batch, impl):
    sigma = 0.1
    if impl == "numpy-generator":
        out = benchmark(numpy_gaussian_noise, batch, sigma, 0)
        other = D.gaussian_noise(batch, sigma, 0)
    else:
        out = benchmark(D.gaussian_noise, batch, sigma, 0, threads=1 if impl == "core-1-thread" else 2)
        ref = R.distort_chain(batch[:2], [("gaussian", 0, [sigma, 0], [sigma, 0])], 0, "uint8")[0]
        np.testing.assert_array_equal(out[:2], ref)
        other = numpy_gaussian_noise(batch, sigma, 0)
    # Same distribution as the other generator: mid-range pixels (no clipping) get N(0, sigma^2) noise.
    mid = (batch > 80) & (batch < 175)
    resid, resid_other = ((o.astype(np.float64) - batch)[mid] / 255 for o in (out, other))
    assert abs(resid.mean() - resid_other.mean()) < 0.003 and abs(resid.std() / resid_other.std() - 1) < 0.03
    assert abs(resid.std() / sigma - 1) < 0.03
