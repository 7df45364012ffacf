"""The raw pipeline: unprocess/develop kernels against numpy references, round trips, DNG, environments."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFilter

from instab import environments, isp
from instab._native import core
from instab.environments.isp_kinds import develop_libraw
from tests.reference import isp_develop_reference, isp_unprocess_reference

PATTERNS = list(isp.PATTERNS)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour field (what a lens delivers: little energy near Nyquist)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


@pytest.fixture(scope="module")
def photos(samples_dir):
    """Eight real photographs through a Gaussian blur (sigma 1 px), standing in for a camera's optical
    low-pass filter: unprocessing assumes a band-limited scene, and sharpened JPEGs are not (on the raw
    JPEGs bilinear gives a median of about 25 dB; see docs/isp.md)."""
    files = sorted(samples_dir.glob("*.JPEG"))[:8]
    return [np.asarray(Image.open(f).convert("RGB").filter(ImageFilter.GaussianBlur(1.0))) for f in files]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_round_trip_photos(photos, pattern):
    psnr = {d: [] for d in isp.DEMOSAICS}
    for im in photos:
        mosaic, meta = isp.unprocess(im, pattern)
        assert mosaic.dtype == np.uint16 and mosaic.shape == im.shape[:2]
        for d in isp.DEMOSAICS:
            psnr[d].append(isp.psnr(isp.develop(mosaic, meta, d), im))
    bil, mal, ha = (np.array(psnr[d]) for d in isp.DEMOSAICS)
    assert np.median(bil) >= 30 and bil.min() >= 28, psnr
    assert np.all(mal > bil + 1) and np.median(mal - bil) >= 3, psnr
    assert np.all(ha > bil + 1), psnr


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("shape", [(64, 96), (63, 97), (2, 2), (5, 7), (3, 2)])
def test_round_trip_smooth(pattern, shape):
    im = smooth_image(*shape, seed=sum(shape))
    mosaic, meta = isp.unprocess(im, pattern)
    for d in isp.DEMOSAICS:
        out = isp.develop(mosaic, meta, d)
        assert out.shape == im.shape and out.dtype == np.uint8
        if min(shape) >= 32:
            assert isp.psnr(out, im) >= 30


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("demosaic", isp.DEMOSAICS)
def test_flat_colour_is_recovered_exactly(pattern, demosaic):
    # Every demosaic reproduces a flat field; only 14-bit quantisation remains.
    im = np.zeros((6, 9, 3), np.uint8)
    im[:] = (200, 90, 40)
    mosaic, meta = isp.unprocess(im, pattern, highlight_safe=False)
    out = isp.develop(mosaic, meta, demosaic)
    assert np.abs(out.astype(int) - im).max() <= 1


def test_other_curves_round_trip():
    im = smooth_image(48, 64, seed=3)
    for gamma in isp.GAMMAS:
        for tone in isp.TONES:
            mosaic, meta = isp.unprocess(im, tone=tone, gamma=gamma)
            out = isp.develop(mosaic, meta, "malvar", tone=tone, gamma=gamma)
            assert isp.psnr(out, im) >= 30, (gamma, tone)


def test_uint16_and_float_outputs_agree():
    im = smooth_image(20, 30)
    mosaic, meta = isp.unprocess(im)
    u8 = isp.develop(mosaic, meta, out_dtype="uint8")
    u16 = isp.develop(mosaic, meta, out_dtype="uint16")
    f = isp.develop(mosaic, meta, out_dtype="float32")
    assert u16.dtype == np.uint16 and f.dtype == np.float32
    assert np.abs(u16 / 65535.0 - f).max() < 2e-5
    assert np.abs(u8 / 255.0 - f).max() < 0.6 / 255 + 1e-6


def test_hand_worked_bilinear():
    # RGGB, black 0, white 1000, no white balance, identity matrix, linear curve.
    mosaic = np.array([[10, 20, 30, 40], [50, 60, 70, 80], [90, 100, 110, 120], [130, 140, 150, 160]], np.uint16)
    meta = isp.RawMeta("rggb", black_level=0, white_level=1000)
    out = isp.develop(mosaic, meta, "bilinear", wb="none", gamma="linear", tone="none", out_dtype="float32") * 1000
    # (0,0) is R=10; mirrored neighbours: G = (50+50+20+20)/4, B = the four diagonals, all (1,1) = 60.
    np.testing.assert_allclose(out[0, 0], [10, 35, 60], rtol=1e-6)
    # (1,1) is B=60; G = (20+100+50+70)/4; R = (10+30+90+110)/4.
    np.testing.assert_allclose(out[1, 1], [60, 60, 60], rtol=1e-6)
    # (0,1) is G=20 in a red row: R from left/right (10+30)/2, B from above/below (60 mirrored, 60)/2.
    np.testing.assert_allclose(out[0, 1], [20, 20, 60], rtol=1e-6)
    # (3,3) is B=160 at the corner: G = (120+120+150+150)/4, R = (110 x 4)/4.
    np.testing.assert_allclose(out[3, 3], [110, 135, 160], rtol=1e-6)


# ---------------------------------------------------------------------------
# kernels against the numpy references


def _matrix(draw):
    # A colour matrix near identity, rows summing to about one (like real cam_to_rgb).
    off = draw(st.lists(st.floats(-0.4, 0.4), min_size=9, max_size=9))
    return np.eye(3) + np.array(off).reshape(3, 3)


@st.composite
def develop_case(draw):
    h = draw(st.integers(2, 11))
    w = draw(st.integers(2, 11))
    in_dtype = draw(st.sampled_from(["uint16", "float32"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if in_dtype == "uint16":
        white = float(draw(st.sampled_from([1023, 4095, 16383, 65535])))
        if draw(st.booleans()):
            black = [float(draw(st.integers(0, 64)))] * 4
        else:
            black = [float(b) for b in rng.integers(0, 64, 4)]
        mosaic = rng.integers(0, int(white) + 1, (h, w)).astype(np.uint16)
        if draw(st.booleans()):  # structured: edges and flat runs (ties in the gradient tests)
            mosaic = (mosaic // int(white // 3 + 1)) * int(white // 3)
    else:
        white, black = 1.0, [0.05] * 4
        mosaic = rng.uniform(-0.1, 1.2, (h, w)).astype(np.float32)
    gains = draw(st.tuples(st.floats(0.5, 3.0), st.floats(0.5, 2.0), st.floats(0.5, 3.0)))
    return dict(
        mosaic=mosaic, pattern=draw(st.sampled_from(PATTERNS)), black=black, white=white, gains=list(gains),
        cam_to_rgb=_matrix(draw), method=draw(st.sampled_from(list(isp.DEMOSAICS))),
        gamma=draw(st.sampled_from(list(isp.GAMMAS))), tone=draw(st.sampled_from(list(isp.TONES))),
        out_dtype=draw(st.sampled_from(["uint8", "uint16", "float32"])), threads=draw(st.integers(1, 3)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(develop_case())
def test_develop_matches_reference(case):
    c = dict(case)
    threads = c.pop("threads")
    mosaic = c.pop("mosaic")
    got = core.isp_develop(
        mosaic[None], c["pattern"], c["black"], c["white"], c["gains"], c["cam_to_rgb"], c["method"], c["gamma"],
        c["tone"], c["out_dtype"], threads,
    )[0]
    want = isp_develop_reference(mosaic, **c)
    assert got.dtype == want.dtype and got.shape == want.shape
    if c["out_dtype"] == "float32":
        if c["gamma"] == "linear" and c["tone"] == "none":
            np.testing.assert_array_equal(got, want)  # the same float32 operations in the same order
        else:
            np.testing.assert_allclose(got, want, atol=2e-6)  # table interpolation
    else:
        # Tables and float32 rounding move a value across a rounding boundary at most, except at
        # BT.709's knee: its two branches meet with a jump (4.5 * 0.018 = 0.0810 but
        # 1.099 * 0.018**0.45 - 0.099 = 0.0812, 16.2 uint16 steps) that the table interpolates across.
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
        if c["gamma"] == "bt709":
            top = 65535 if c["out_dtype"] == "uint16" else 255
            near_knee = np.abs(want / top - 0.081) < 3e-4
            assert diff[near_knee].max(initial=0) <= (17 if top == 65535 else 1)
            diff = diff[~near_knee]
        assert diff.max(initial=0) <= 1


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(2, 9), w=st.integers(2, 9), n=st.integers(1, 3), pattern=st.sampled_from(PATTERNS),
    noise=st.booleans(), highlight_safe=st.booleans(), tone=st.sampled_from(list(isp.TONES)),
    gamma=st.sampled_from(list(isp.GAMMAS)), seed=st.integers(0, 2**63), first=st.integers(0, 1000),
    threads=st.integers(1, 3), data=st.data(),
)
def test_unprocess_matches_reference(h, w, n, pattern, noise, highlight_safe, tone, gamma, seed, first, threads, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    if data.draw(st.booleans()):
        images[:, ::2] = 255  # highlights
    m = isp.nikon_meta().rgb_to_cam if data.draw(st.booleans()) else np.eye(3)
    inv_gains = [1 / 1.9, 1.0, 1 / 1.4]
    black, white = [600.0, 610.0, 590.0, 600.0], 15520.0
    shot, read = (1e-3, 1e-5) if noise else (0.0, 0.0)
    got = core.isp_unprocess(
        images, pattern, m, inv_gains, highlight_safe, tone, gamma, black, white, shot, read, seed, first, threads
    )
    for i in range(n):
        want = isp_unprocess_reference(
            images[i], pattern, m, inv_gains, highlight_safe, tone, gamma, black, white, shot, read, seed, first + i
        )
        # libm and numpy may differ in the last bit of pow/log/sin: at most one raw step.
        assert np.abs(got[i].astype(int) - want.astype(int)).max() <= 1


def test_noise_is_keyed_by_seed_and_image_index():
    images = np.stack([smooth_image(16, 24, seed=s) for s in range(4)])
    kw = dict(shot_noise=1e-3, read_noise=1e-5)
    whole, _ = isp.unprocess(images, seed=7, threads=3, **kw)
    head, _ = isp.unprocess(images[:1], seed=7, threads=1, **kw)
    tail, _ = isp.unprocess(images[1:], seed=7, first_index=1, threads=2, **kw)
    np.testing.assert_array_equal(whole, np.concatenate([head, tail]))
    listed, _ = isp.unprocess(list(images), seed=7, **kw)
    np.testing.assert_array_equal(whole, np.stack(listed))
    other, _ = isp.unprocess(images, seed=8, **kw)
    clean, _ = isp.unprocess(images, seed=7)
    assert (other != whole).mean() > 0.5 and (clean != whole).mean() > 0.5
    # Same image content at two indices gets different noise.
    twin, _ = isp.unprocess(np.stack([images[0], images[0]]), seed=7, **kw)
    assert (twin[0] != twin[1]).mean() > 0.5
    # Noise level: read noise alone has the asked-for standard deviation (in raw units).
    flat = np.full((1, 128, 128, 3), 128, np.uint8)
    base, meta = isp.unprocess(flat, seed=1)
    noisy, _ = isp.unprocess(flat, seed=1, read_noise=1e-4)
    sd = (noisy.astype(float) - base).std() / (meta.white_level - meta.black_level[0])
    assert 0.009 < sd < 0.011


def test_develop_is_identical_for_any_thread_count_and_batch():
    rng = np.random.default_rng(0)
    mosaics = rng.integers(0, 16384, (3, 37, 41)).astype(np.uint16)
    meta = isp.nikon_meta("gbrg")
    for d in isp.DEMOSAICS:
        ref = isp.develop(mosaics, meta, d, threads=1)
        for t in (2, 3, 7, None):
            np.testing.assert_array_equal(isp.develop(mosaics, meta, d, threads=t), ref)
        np.testing.assert_array_equal(np.stack(isp.develop(list(mosaics), meta, d)), ref)
        np.testing.assert_array_equal(isp.develop(mosaics[1], meta, d), ref[1])


# ---------------------------------------------------------------------------
# sizes and bad input


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (3, 1), (1, 8), (8, 1)])
def test_too_small_raises(shape):
    with pytest.raises(ValueError, match="too small"):
        isp.develop(np.zeros(shape, np.uint16), isp.RawMeta())
    with pytest.raises(ValueError, match="too small"):
        isp.unprocess(np.zeros(shape + (3,), np.uint8))


@pytest.mark.parametrize("shape", [(2, 2), (2, 3), (3, 2), (5, 7), (7, 5), (2, 9)])
def test_tiny_and_odd_sizes(shape):
    im = smooth_image(*shape, seed=1)
    for pattern in PATTERNS:
        mosaic, meta = isp.unprocess(im, pattern)
        for d in isp.DEMOSAICS:
            out = isp.develop(mosaic, meta, d)
            ref = isp_develop_reference(
                mosaic, pattern, meta.black_level, meta.white_level, meta.wb_gains, meta.cam_to_rgb, d, "srgb",
                "smoothstep", "uint8",
            )
            assert np.abs(out.astype(int) - ref).max() <= 1


def test_bad_arguments():
    meta = isp.RawMeta()
    m = np.zeros((4, 4), np.uint16)
    with pytest.raises(ValueError, match="demosaic"):
        isp.develop(m, meta, "nearest")
    with pytest.raises(ValueError, match="gamma"):
        isp.develop(m, meta, gamma="cubic")
    with pytest.raises(ValueError, match="out_dtype"):
        isp.develop(m, meta, out_dtype="int8")
    with pytest.raises(ValueError, match="wb"):
        isp.develop(m, meta, wb="daylight")
    with pytest.raises(ValueError, match="wb"):
        isp.develop(m, meta, wb=(1, 0, 1))
    with pytest.raises(TypeError, match="mosaic"):
        isp.develop(np.zeros((4, 4), np.complex64), meta)
    with pytest.raises(ValueError, match="mosaic"):
        isp.develop(np.zeros((2, 2, 4, 4), np.uint16), meta)
    with pytest.raises(TypeError, match="meta"):
        isp.develop(m, {"pattern": "rggb"})
    with pytest.raises(ValueError, match="pattern"):
        isp.RawMeta(pattern="rgbg")
    with pytest.raises(ValueError, match="black_level"):
        isp.RawMeta(black_level=70000)
    with pytest.raises(ValueError, match="wb_gains"):
        isp.RawMeta(wb_gains=(1, -1, 1))
    with pytest.raises(ValueError, match="xyz_to_cam"):
        isp.RawMeta(xyz_to_cam=np.zeros((3, 3)))
    with pytest.raises(TypeError, match="images"):
        isp.unprocess(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shot_noise"):
        isp.unprocess(np.zeros((4, 4, 3), np.uint8), shot_noise=-1)
    with pytest.raises(ValueError, match="pattern"):
        isp.unprocess(np.zeros((4, 4, 3), np.uint8), "rgbg")
    with pytest.raises(ValueError, match="threads"):
        isp.develop(m, meta, threads=-1)
    # The core checks its own arguments too, naming them.
    with pytest.raises(ValueError, match="mosaic"):
        core.isp_develop(np.zeros((1, 4, 4), np.uint16)[:, ::2], "rggb", [0] * 4, 1, [1] * 3, np.eye(3), "malvar",
                         "srgb", "none", "uint8", 1)
    with pytest.raises(ValueError, match="cam_to_rgb"):
        core.isp_develop(np.zeros((1, 4, 4), np.uint16), "rggb", [0] * 4, 1, [1] * 3, np.eye(2), "malvar", "srgb",
                         "none", "uint8", 1)
    with pytest.raises(ValueError, match="black_level"):
        core.isp_develop(np.zeros((1, 4, 4), np.uint16), "rggb", [5] * 4, 1, [1] * 3, np.eye(3), "malvar", "srgb",
                         "none", "uint8", 1)


def test_gray_and_rgba_inputs():
    gray = smooth_image(8, 8)[..., :1]
    rgba = np.concatenate([smooth_image(8, 8), np.full((8, 8, 1), 7, np.uint8)], axis=-1)
    m1, _ = isp.unprocess(gray)
    m3, _ = isp.unprocess(np.repeat(gray, 3, axis=-1))
    np.testing.assert_array_equal(m1, m3)
    m4, _ = isp.unprocess(rgba)
    np.testing.assert_array_equal(m4, isp.unprocess(np.ascontiguousarray(rgba[..., :3]))[0])


def test_auto_white_balance_removes_a_cast():
    im = smooth_image(64, 64, seed=5)
    mosaic, meta = isp.unprocess(im, tone="none")
    # Claim the wrong as-shot white balance; gray world recovers a neutral mean.
    wrong = meta.replace(wb_gains=(1.0, 1.0, 1.0))
    cast = isp.develop(mosaic, wrong, tone="none").reshape(-1, 3).mean(0)
    auto = isp.develop(mosaic, wrong, wb="auto", tone="none").reshape(-1, 3).mean(0)
    assert np.ptp(auto) < 0.3 * np.ptp(cast)
    np.testing.assert_allclose(isp.auto_wb_gains(mosaic, meta), isp.auto_wb_gains(mosaic, wrong))


# ---------------------------------------------------------------------------
# DNG and LibRaw


@pytest.mark.parametrize("pattern", PATTERNS)
def test_dng_is_read_back_by_rawpy(tmp_path, pattern):
    rawpy = pytest.importorskip("rawpy")
    im = smooth_image(48, 64, seed=2)
    mosaic, meta = isp.unprocess(im, pattern, tone="none")
    path = tmp_path / "x.dng"
    isp.write_dng(path, mosaic, meta)
    with rawpy.imread(str(path)) as raw:
        np.testing.assert_array_equal(raw.raw_image_visible, mosaic)
        assert raw.white_level == meta.white_level
        assert list(raw.black_level_per_channel) == [600] * 4
        rgb = raw.postprocess(
            demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR, use_camera_wb=True, no_auto_bright=True,
            gamma=(2.4, 12.92), output_bps=8, user_flip=0, adjust_maximum_thr=0.0,
        )
    back, meta2 = isp.read_raw(path)
    np.testing.assert_array_equal(back, mosaic)
    assert meta2.pattern == pattern and meta2.black_level == meta.black_level
    np.testing.assert_allclose(meta2.wb_gains, meta.wb_gains, rtol=1e-5)
    np.testing.assert_allclose(meta2.cam_to_rgb, meta.cam_to_rgb, atol=1e-4)
    # LibRaw's bilinear demosaic and colour pipeline agree with ours on the same DNG.
    ours = isp.develop(mosaic, meta, "bilinear", tone="none")
    assert isp.psnr(ours, rgb) > 45
    assert isp.psnr(rgb, im) > 30


def test_dng_with_fractional_levels_and_no_matrix(tmp_path):
    meta = isp.RawMeta("grbg", black_level=(64.5, 64.5, 64.5, 64.5), white_level=4095, wb_gains=(2, 1, 1.5))
    mosaic = np.random.default_rng(0).integers(64, 4096, (32, 40)).astype(np.uint16)
    isp.write_dng(tmp_path / "f.dng", mosaic, meta)
    back, meta2 = isp.read_raw(tmp_path / "f.dng")
    np.testing.assert_array_equal(back, mosaic)
    np.testing.assert_allclose(meta2.cam_to_rgb, np.eye(3), atol=1e-4)


def test_read_raw_rejects_junk(tmp_path):
    bad = tmp_path / "bad.dng"
    bad.write_bytes(b"not a raw file at all" * 10)
    with pytest.raises(ValueError, match="bad.dng"):
        isp.read_raw(bad)
    with pytest.raises(TypeError, match="mosaic"):
        isp.write_dng(tmp_path / "y.dng", np.zeros((4, 4), np.float32), isp.RawMeta())


def _frame(raw_dir, name):
    meta_j = json.loads((raw_dir / "meta.json").read_text())
    pattern = meta_j["files"][name]
    mosaic = isp.read_headerless(raw_dir / name, meta_j["height"], meta_j["width"])
    meta = isp.RawMeta(
        pattern=pattern, black_level=meta_j["black_level"], white_level=meta_j["white_level"],
        wb_gains=meta_j["white_balance_gains_rgb"], xyz_to_cam=meta_j["color_matrix_2_xyz_to_camera"],
    )
    return mosaic, meta


def test_real_frame_ours_vs_libraw(raw_dir):
    # The shared Nikon frame developed by us and by LibRaw through our DNG.
    mosaic, meta = _frame(raw_dir, "DSC_1339_768x512_rggb.raw")
    ours = isp.develop(mosaic, meta, "bilinear", tone="none")
    libraw = develop_libraw(mosaic, meta, "linear")
    assert isp.psnr(ours, libraw) > 45  # measured 54.0 dB
    assert isp.psnr(isp.develop(mosaic, meta, "ha", tone="none"), develop_libraw(mosaic, meta, "ahd")) > 35


# ---------------------------------------------------------------------------
# environments


def test_environment_names_parse():
    for name in ("isp:libraw-ahd", "isp:instab-malvar", "isp:libraw-vng,awb,gamma=bt709",
                 "isp:instab-ha,tone=smoothstep,pattern=bggr,shot=0.001,read=1e-05"):
        env = environments.parse(name)
        assert str(env) == name
    for bad in ("isp", "isp:libraw-foo", "isp:instab-malvar,gamma=cubic", "isp:instab-malvar,zoom=2",
                "isp:instab-malvar,libraw-ahd", "isp:libraw-ahd,shot=-1"):
        with pytest.raises(ValueError):
            environments.parse(bad)


def test_environment_apply_batch_and_list():
    images = np.stack([smooth_image(40, 56, seed=s) for s in range(3)])
    for name in ("isp:instab-malvar", "isp:libraw-ahd", "isp:libraw-linear,awb", "isp:instab-bilinear,awb"):
        env = environments.parse(name)
        out = env.apply(images, seed=3)
        assert out.images.shape == images.shape and out.errors == [None] * 3
        assert isp.psnr(out.images, images) > 24, name
        again = env.apply(list(images), seed=3)
        np.testing.assert_array_equal(np.stack(again.images), out.images)
    # instab's pipeline through the environment = unprocess + develop called directly.
    env = environments.parse("isp:instab-ha,shot=0.001,read=1e-6")
    out = env.apply(images, seed=5, first_index=10)
    mosaic, meta = isp.unprocess(images, "rggb", 5, shot_noise=1e-3, read_noise=1e-6, tone="none", first_index=10)
    np.testing.assert_array_equal(out.images, isp.develop(mosaic, meta, "ha", tone="none"))
    assert not np.array_equal(env.apply(images, seed=6).images, out.images)


def test_environment_per_item_errors():
    good = smooth_image(30, 30)
    items = [good, np.zeros((1, 5, 3), np.uint8), None, good]
    out = environments.parse("isp:instab-malvar").apply(items)
    assert out.images[1] is None and out.images[2] is None
    assert "too small" in out.errors[1] and out.errors[2]
    assert out.errors[0] is None and out.errors[3] is None
    np.testing.assert_array_equal(out.images[0], out.images[3])
    # LibRaw refuses tiny images: a per-item error, the rest developed.
    out = environments.parse("isp:libraw-ahd").apply([good, smooth_image(8, 8)])
    assert out.errors[0] is None and out.errors[1] is not None


# ---------------------------------------------------------------------------
# experiments (the plumbing, with a stand-in classifier; the real runs are in docs/isp.md)


class _ColourClassifier:
    """Classifies by the coarse mean colour: sensitive to white balance and tone, as a model is."""

    def predict(self, images, k=5):
        from types import SimpleNamespace

        classes = np.zeros((len(images), k), np.int64)
        for i, im in enumerate(images):
            mean = im.reshape(-1, 3).mean(0) // 24
            base = int(mean[0] * 121 + mean[1] * 11 + mean[2]) % 1000
            classes[i] = (base + np.arange(k)) % 1000
        return SimpleNamespace(classes=classes, errors=[None] * len(images))


def test_experiments_run_with_a_classifier(samples_dir):
    from instab.studies import isp as ex

    images, _ = ex.load_samples(samples_dir, limit=6)
    clf = _ColourClassifier()
    labels = clf.predict(images, k=1).classes[:, 0]  # "right" on the original images
    images.append(np.zeros((1, 1, 3), np.uint8))  # too small for a Bayer pattern: a per-item failure
    labels = np.append(labels, 0)
    isps = ("isp:libraw-ahd", "isp:libraw-ahd,awb", "isp:instab-malvar")
    table = ex.isp_table(images, labels, clf, isps=isps)
    assert table.errors == [1, 1, 1] and len(table.top1) == 3 and "libraw-ahd,awb" in table.markdown()
    # The same numbers from the pieces (each environment with the table's noise, the classifier), counted here;
    # the failed image is left out of every rate.
    noise = f"shot={ex.SHOT_NOISE},read={ex.READ_NOISE}"
    developed = [environments.parse(f"{n},{noise}").apply(images[:6]).images for n in isps]
    correct = _correct_top1(clf, developed, labels[:6])
    assert table.top1 == pytest.approx(correct.mean(axis=0).tolist())
    assert table.instability_top1 == pytest.approx(_unstable(correct).mean())

    mit = ex.raw_mitigation(images, labels, clf)
    assert "one pipeline" in mit.markdown()
    shipped, ours = [], []
    devices = (("isp:libraw-ahd,pattern=rggb", 90), ("isp:libraw-vng,awb,gamma=bt709,pattern=grbg", 70))
    for k, (name, q) in enumerate(devices):
        env = environments.parse(f"{name},{noise}")
        raws = [env.raw(im, seed=k, first_index=i) for i, im in enumerate(images[:6])]
        shipped.append([_jpeg_round_trip(env.develop(m), q) for m in raws])
        ours.append([isp.develop(m, env.meta, "malvar", tone=env.tone) for m in raws])
    dev, con = _correct_top1(clf, shipped, labels[:6]), _correct_top1(clf, ours, labels[:6])
    assert mit.device_top1 == pytest.approx(dev.mean(axis=0).tolist())
    assert mit.consistent_top1 == pytest.approx(con.mean(axis=0).tolist())
    assert mit.instability_devices_top1 == pytest.approx(_unstable(dev).mean())
    assert mit.instability_consistent_top1 == pytest.approx(_unstable(con).mean())


def _correct_top1(clf, images_per_env, labels) -> np.ndarray:
    """[images, environments]: top-1 right."""
    return np.stack([clf.predict(list(ims), k=1).classes[:, 0] == labels for ims in images_per_env], axis=1)


def _unstable(correct: np.ndarray) -> np.ndarray:
    return correct.any(axis=1) & ~correct.all(axis=1)


def _jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def test_raw_frame_psnr_table(raw_dir):
    from instab.studies import isp as ex

    rows = ex.raw_frame_psnr(raw_dir)
    assert len(rows) == 4
    for row in rows:
        assert row["instab-bilinear vs libraw-linear"] > 45


def test_isp_table_with_the_real_classifier(samples_dir, models_dir):
    import instab
    from instab import models
    from instab.studies import isp as ex

    clf = instab.Classifier(models.load(models_dir / "mobilenet_v2_1.0_224_int8_st.onnx"), threads=2)
    images, labels = ex.load_samples(samples_dir, limit=12)
    isps = ("isp:libraw-ahd", "isp:instab-malvar", "isp:instab-bilinear")
    table = ex.isp_table(images, labels, clf, isps=isps)
    # MobileNetV2 int8 is ~0.83 top-1 on these photographs; developed raw stays close to that.
    assert min(table.top1) >= 0.5 and min(table.top5) >= 0.75, table
    assert table.errors == [0, 0, 0]
    assert table.original_top1 == pytest.approx(np.mean(clf.predict(images, k=1).classes[:, 0] == labels))
    noise = f"shot={ex.SHOT_NOISE},read={ex.READ_NOISE}"
    correct = _correct_top1(clf, [environments.parse(f"{n},{noise}").apply(images).images for n in isps], labels)
    assert table.top1 == pytest.approx(correct.mean(axis=0).tolist())
    assert table.instability_top1 == pytest.approx(_unstable(correct).mean())
