"""The raw pipeline: instab's develop beside LibRaw (rawpy), OpenCV and the numpy references.

Full sizes (the issue's): a 12-megapixel (4000x3000) 14-bit Bayer mosaic, made by
unprocessing a real photograph upscaled to 12 MP. Under --benchmark-disable
(CI's correctness mode) the mosaic is 192x256 so the file runs in seconds.

Every row checks its result against the other implementation of its group, computed
untimed in the same test: instab vs LibRaw by PSNR (the same colour pipeline; the
demosaics differ at edges), develop vs the numpy references within one output step
(float32 rounding moves a value across a rounding boundary at most), and the integer
demosaic exactly: vs OpenCV inside the outermost pixel ring, vs its numpy reference
everywhere.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from instab import isp
from instab._native import core
from tests.reference import demosaic_reference, isp_develop_reference, isp_unprocess_reference

rawpy = pytest.importorskip("rawpy")

# OpenCV names Bayer codes after the second row's pattern: RGGB data is "BayerBG".
_CV2_CODE = {"rggb": "COLOR_BayerBG2RGB", "bggr": "COLOR_BayerRG2RGB", "grbg": "COLOR_BayerGB2RGB",
             "gbrg": "COLOR_BayerGR2RGB"}


@pytest.fixture(scope="module")
def full(request) -> bool:
    return not request.config.getoption("benchmark_disable")


@pytest.fixture(scope="module")
def photo(samples_dir, full):
    im = Image.open(sorted(samples_dir.glob("*.JPEG"))[0]).convert("RGB")
    size = (4000, 3000) if full else (256, 192)
    return np.asarray(im.resize(size, Image.BICUBIC))


@pytest.fixture(scope="module")
def raw(photo):
    mosaic, meta = isp.unprocess(photo, "rggb", seed=1, shot_noise=1e-4, read_noise=1e-6, tone="none")
    buf = io.BytesIO()
    isp.write_dng(buf, mosaic, meta)
    return mosaic, meta, buf.getvalue()


def _libraw(dng: bytes, algorithm: str) -> np.ndarray:
    with rawpy.imread(io.BytesIO(dng)) as r:
        return r.postprocess(
            demosaic_algorithm=getattr(rawpy.DemosaicAlgorithm, algorithm), use_camera_wb=True, no_auto_bright=True,
            gamma=(2.4, 12.92), output_bps=8, user_flip=0, adjust_maximum_thr=0.0,
        )


# Each row's counterpart in the other engine, and the PSNR it must exceed: the same demosaic and colour
# pipeline agree to > 45 dB (54 dB on the real frame); different demosaics differ only at edges (> 30 dB).
_COUNTERPART = {
    "instab-bilinear": ("rawpy-LINEAR", 45), "instab-malvar": ("rawpy-LINEAR", 30), "instab-ha": ("rawpy-AHD", 30),
    "rawpy-LINEAR": ("instab-bilinear", 45), "rawpy-AHD": ("instab-ha", 30),
}


def _develop(raw, impl: str) -> np.ndarray:
    mosaic, meta, dng = raw
    engine, _, method = impl.partition("-")
    return isp.develop(mosaic, meta, method, tone="none") if engine == "instab" else _libraw(dng, method)


@pytest.mark.benchmark(group="develop-12MP-16bit")
@pytest.mark.parametrize("impl", list(_COUNTERPART))
def test_develop(benchmark, raw, impl):
    mosaic, meta, dng = raw
    engine, _, method = impl.partition("-")
    if engine == "instab":
        out = benchmark(isp.develop, mosaic, meta, method, tone="none")
    else:
        out = benchmark(_libraw, dng, method)
    assert out.shape == mosaic.shape + (3,) and out.dtype == np.uint8
    other, floor = _COUNTERPART[impl]
    assert isp.psnr(out, _develop(raw, other)) > floor


@pytest.fixture
def cv2_one_thread():
    cv2 = pytest.importorskip("cv2")
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield cv2
    cv2.setNumThreads(before)


# One thread each (issue 19: demosaic alone at least as fast as OpenCV's Bayer bilinear).
# instab-develop is develop with nothing but the demosaic to do, which runs the same kernel.
@pytest.mark.benchmark(group="bilinear-12MP-16bit-vs-cv2")
@pytest.mark.parametrize("impl", ["instab-demosaic", "instab-develop", "cv2"])
@pytest.mark.parametrize("pattern", ["rggb", "gbrg"])
def test_bilinear_vs_opencv(benchmark, raw, cv2_one_thread, impl, pattern):
    cv2 = cv2_one_thread
    mosaic = raw[0]
    if pattern == "gbrg":  # the same data read one row down is a GBRG mosaic
        mosaic = np.ascontiguousarray(mosaic[1:-1])
    code = getattr(cv2, _CV2_CODE[pattern])
    plain = isp.RawMeta(pattern, black_level=0, white_level=65535)
    kwargs = dict(wb="none", gamma="linear", tone="none", out_dtype="uint16", threads=1)
    if impl == "instab-demosaic":
        out = benchmark(isp.demosaic, mosaic, pattern, threads=1)
        ref = cv2.cvtColor(mosaic, code)
    elif impl == "instab-develop":
        out = benchmark(isp.develop, mosaic, plain, "bilinear", **kwargs)
        ref = cv2.cvtColor(mosaic, code)
    else:
        out = benchmark(cv2.cvtColor, mosaic, code)
        ref = isp.demosaic(mosaic, pattern, threads=1)
    # OpenCV treats the outermost pixel ring differently; inside it, both round the same average.
    np.testing.assert_array_equal(out[1:-1, 1:-1], ref[1:-1, 1:-1])


@pytest.mark.benchmark(group="bilinear-12MP-8bit-vs-cv2")
@pytest.mark.parametrize("impl", ["instab-demosaic", "cv2"])
def test_bilinear_8bit_vs_opencv(benchmark, raw, cv2_one_thread, impl):
    cv2 = cv2_one_thread
    mosaic = (raw[0] >> 6).astype(np.uint8)  # 14-bit raw to 8 bits
    if impl == "instab-demosaic":
        out = benchmark(isp.demosaic, mosaic, "rggb", threads=1)
        ref = cv2.cvtColor(mosaic, cv2.COLOR_BayerBG2RGB)
    else:
        out = benchmark(cv2.cvtColor, mosaic, cv2.COLOR_BayerBG2RGB)
        ref = isp.demosaic(mosaic, "rggb", threads=1)
    np.testing.assert_array_equal(out[1:-1, 1:-1], ref[1:-1, 1:-1])


@pytest.mark.benchmark(group="demosaic-1MP-16bit-vs-numpy")
@pytest.mark.parametrize("impl", ["instab", "numpy"])
@pytest.mark.parametrize("method", ["bilinear", "malvar", "ha"])
def test_demosaic_vs_numpy(benchmark, tile, impl, method):
    mosaic = tile[0]
    if impl == "instab":
        out = benchmark(isp.demosaic, mosaic, "rggb", method, threads=1)
        ref = demosaic_reference(mosaic, "rggb", method)
    else:
        out = benchmark.pedantic(demosaic_reference, (mosaic, "rggb", method), rounds=1, iterations=1)
        ref = isp.demosaic(mosaic, "rggb", method, threads=1)
    np.testing.assert_array_equal(out, ref)


def _reference_args(mosaic: np.ndarray, meta: isp.RawMeta, method: str) -> tuple:
    return (mosaic, meta.pattern, meta.black_level, meta.white_level, meta.wb_gains, meta.cam_to_rgb, method, "srgb",
            "none", "uint8")


@pytest.fixture(scope="module")
def malvar_numpy(raw):
    """The numpy reference of the full mosaic, computed once (untimed) for the thread group."""
    mosaic, meta, _ = raw
    return isp_develop_reference(*_reference_args(mosaic, meta, "malvar"))


@pytest.mark.benchmark(group="develop-malvar-threads")
@pytest.mark.parametrize("impl", ["numpy-reference", "instab-1", "instab-2", "instab-4"])
def test_thread_scaling(benchmark, raw, malvar_numpy, impl):
    # The baseline is the single-threaded numpy reference (one round: it takes seconds at 12 MP).
    mosaic, meta, _ = raw
    if impl == "numpy-reference":
        out = benchmark.pedantic(isp_develop_reference, _reference_args(mosaic, meta, "malvar"), rounds=1)
        ref = isp.develop(mosaic, meta, "malvar", tone="none", threads=1)
    else:
        out = benchmark(isp.develop, mosaic, meta, "malvar", tone="none", threads=int(impl.split("-")[1]))
        ref = malvar_numpy
    assert np.abs(out.astype(int) - ref).max() <= 1


@pytest.fixture(scope="module")
def tile(raw, full):
    # The numpy references are slow and memory-hungry: time them on a 1-MP tile.
    mosaic, meta, _ = raw
    return np.ascontiguousarray(mosaic[: 1000 if full else 64, : 1000 if full else 96]), meta


@pytest.mark.benchmark(group="develop-1MP-vs-numpy")
@pytest.mark.parametrize("impl", ["instab", "numpy"])
@pytest.mark.parametrize("method", ["malvar", "ha"])
def test_develop_vs_numpy(benchmark, tile, impl, method):
    mosaic, meta = tile
    args = _reference_args(mosaic, meta, method)
    if impl == "instab":
        out = benchmark(isp.develop, mosaic, meta, method, tone="none")
        ref = isp_develop_reference(*args)
    else:
        out = benchmark.pedantic(isp_develop_reference, args, rounds=1, iterations=1)
        ref = isp.develop(mosaic, meta, method, tone="none")
    assert np.abs(out.astype(int) - ref).max() <= 1


@pytest.mark.benchmark(group="unprocess-1MP-vs-numpy")
@pytest.mark.parametrize("impl", ["instab", "numpy"])
def test_unprocess_vs_numpy(benchmark, photo, full, impl):
    im = np.ascontiguousarray(photo[: 1000 if full else 64, : 1000 if full else 96])
    meta = isp.nikon_meta()
    args = (im, "rggb", meta.rgb_to_cam, [1 / g for g in meta.wb_gains], True, "smoothstep", "srgb",
            meta.black_level, meta.white_level, 1e-3, 1e-5, 3, 0)
    if impl == "instab":
        out = benchmark(core.isp_unprocess, im[None], *args[1:], 0)[0]
        ref = isp_unprocess_reference(*args)
    else:
        out = benchmark.pedantic(isp_unprocess_reference, args, rounds=1, iterations=1)
        ref = core.isp_unprocess(im[None], *args[1:], 0)[0]
    # libm and numpy may differ in the last bit of pow/log/sin: at most one raw step.
    assert np.abs(out.astype(int) - ref).max() <= 1
