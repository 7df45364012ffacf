"""instab.preprocess: exact against the numpy reference and against Pillow itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import instab
from instab.inference.preprocessing import resize_plan
from tests.reference import pillow_resize_ref, pillow_vertical_first, preprocess_plan_ref, preprocess_ref

# Pillow 13 chose the order of its two resampling passes by shape; older Pillow always
# ran the horizontal pass first. instab follows Pillow 13, which pyproject.toml requires:
# every comparison with Pillow below is exact, none is weakened for an older version.
PILLOW_ORDER_RULE = True

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def image_batches(draw, max_side=40):
    n = draw(st.integers(1, 4))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    ims = []
    for _ in range(n):
        h = draw(st.integers(1, max_side))
        w = draw(st.integers(1, max_side))
        shape = (h, w) if channels is None else (h, w, channels)
        seed = draw(st.integers(0, 2**32 - 1))
        ims.append(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))
    return ims


sizes = st.one_of(st.integers(1, 24), st.tuples(st.integers(1, 24), st.integers(1, 24)))
crops = st.one_of(st.sampled_from([1.0, 0.875, 0.5]), st.floats(0.2, 1.0))


@SETTINGS
@given(ims=image_batches(), size=sizes, crop=crops, layout=st.sampled_from(["nhwc", "nchw"]),
       threads=st.sampled_from([1, 2, 3]))
def test_float_matches_reference(ims, size, crop, layout, threads):
    scale = (0.017, 0.0175, 0.0171)
    offset = (-2.1, -2.03, -1.8)
    got = instab.preprocess(ims, size, crop=crop, layout=layout, scale=scale, offset=offset, threads=threads)
    want = preprocess_ref(ims, size, crop=crop, layout=layout, scale=scale, offset=offset)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(ims=image_batches(), size=sizes, crop=crops, layout=st.sampled_from(["nhwc", "nchw"]),
       threads=st.sampled_from([1, 2, 5]))
def test_uint8_matches_reference(ims, size, crop, layout, threads):
    got = instab.preprocess(ims, size, crop=crop, layout=layout, dtype="uint8", threads=threads)
    want = preprocess_ref(ims, size, crop=crop, layout=layout, dtype="uint8")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(h=st.integers(1, 60), w=st.integers(1, 60), oh=st.integers(1, 90), ow=st.integers(1, 90),
       seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["RGB", "L"]))
def test_reference_resize_is_pillow(h, w, oh, ow, seed, mode):
    # The reference itself equals Pillow, upsampling and downsampling, so the kernel
    # tests above are tests against Pillow too.
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    a = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    want = np.asarray(Image.fromarray(a, mode).resize((ow, oh), Image.BILINEAR))
    np.testing.assert_array_equal(pillow_resize_ref(a, oh, ow, order_rule=PILLOW_ORDER_RULE), want)


def test_pass_order_rule_matters_and_is_followed():
    # 5x2 -> 1x1: the two pass orders round differently; Pillow 13 goes vertical first.
    a = np.random.default_rng(0).integers(0, 256, (5, 2, 3), dtype=np.uint8)
    assert pillow_vertical_first(5, 2, 1, 1)
    assert not np.array_equal(pillow_resize_ref(a, 1, 1), pillow_resize_ref(a, 1, 1, order_rule=False))
    tall = np.random.default_rng(1).integers(0, 256, (900, 280, 3), dtype=np.uint8)  # -> 256x822
    rh, rw, top, left = resize_plan(900, 280, 224)
    assert pillow_vertical_first(900, 280, rh, rw)
    got = instab.preprocess([tall, a], 224, dtype="uint8")
    np.testing.assert_array_equal(got, preprocess_ref([tall, a], 224, dtype="uint8"))
    pil = Image.fromarray(tall).resize((rw, rh), Image.BILINEAR).crop((left, top, left + 224, top + 224))
    np.testing.assert_array_equal(got[0], np.asarray(pil))


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (3, 1), (5, 7), (7, 5), (1, 500), (400, 2)])
@pytest.mark.parametrize("size", [1, 3, (2, 5), 16])
def test_tiny_and_odd_shapes(shape, size):
    a = np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8)
    for crop in (1.0, 0.875):
        np.testing.assert_array_equal(
            instab.preprocess([a], size, crop=crop, dtype="uint8"),
            preprocess_ref([a], size, crop=crop, dtype="uint8"),
        )


def test_plan_matches_reference():
    for h, w in [(375, 500), (500, 375), (1, 1), (3, 1000), (224, 224), (257, 256)]:
        for size in [(224, 224), (100, 300), (31, 7)]:
            for crop in (1.0, 0.875, 0.9):
                assert resize_plan(h, w, size, crop) == preprocess_plan_ref(h, w, size, crop)


def test_batch_array_equals_list_and_thread_counts_agree():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (7, 33, 47, 3), dtype=np.uint8)
    base = instab.preprocess(batch, 20, layout="nchw", threads=1)
    np.testing.assert_array_equal(base, instab.preprocess(list(batch), 20, layout="nchw", threads=1))
    for t in (None, 2, 3, 7, 16):
        np.testing.assert_array_equal(base, instab.preprocess(batch, 20, layout="nchw", threads=t))
    # a split batch gives the same rows
    np.testing.assert_array_equal(base[3:], instab.preprocess(batch[3:], 20, layout="nchw"))


def test_layouts_and_dtypes_agree():
    rng = np.random.default_rng(2)
    ims = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(50, 70), (90, 31), (12, 12)]]
    u8 = instab.preprocess(ims, (24, 20), dtype="uint8")
    f = instab.preprocess(ims, (24, 20))
    nchw = instab.preprocess(ims, (24, 20), layout="nchw")
    assert u8.shape == (3, 24, 20, 3) and nchw.shape == (3, 3, 24, 20)
    np.testing.assert_array_equal(f, u8.astype(np.float32) * np.float32(1 / 255))
    np.testing.assert_array_equal(nchw, f.transpose(0, 3, 1, 2))


def test_mean_std_scaling():
    rng = np.random.default_rng(3)
    ims = [rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)]
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    got = instab.preprocess(ims, 16, scale=tuple(1 / (255 * std)), offset=tuple(-mean / std))
    u8 = instab.preprocess(ims, 16, dtype="uint8").astype(np.float32)
    want = u8 * (1 / (255 * std)).astype(np.float32) + (-mean / std).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_grey_replicated_and_alpha_dropped_like_pillow():
    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, (61, 45), dtype=np.uint8)
    rgba = rng.integers(0, 256, (45, 61, 4), dtype=np.uint8)
    rh, rw, top, left = resize_plan(61, 45, 32)
    g = np.asarray(Image.fromarray(grey, "L").resize((rw, rh), Image.BILINEAR).crop((left, top, left + 32, top + 32)))
    got = instab.preprocess([grey], 32, dtype="uint8")[0]
    np.testing.assert_array_equal(got, np.repeat(g[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(instab.preprocess([grey[:, :, None]], 32, dtype="uint8")[0], got)
    rh, rw, top, left = resize_plan(45, 61, 32)
    rgb = Image.fromarray(rgba, "RGBA").convert("RGB").resize((rw, rh), Image.BILINEAR)
    want = np.asarray(rgb.crop((left, top, left + 32, top + 32)))
    np.testing.assert_array_equal(instab.preprocess([rgba], 32, dtype="uint8")[0], want)


def test_overhanging_crop_is_zero_like_pillow_crop():
    a = np.random.default_rng(5).integers(1, 256, (40, 40, 3), dtype=np.uint8)
    size = (10, 30)  # shorter side -> 11, the 30-wide window overhangs an 11x11 image
    rh, rw, top, left = resize_plan(40, 40, size)
    assert left < 0
    pil = Image.fromarray(a).resize((rw, rh), Image.BILINEAR).crop((left, top, left + 30, top + 10))
    got = instab.preprocess([a], size, dtype="uint8")[0]
    np.testing.assert_array_equal(got, np.asarray(pil))
    assert (got[:, 0] == 0).all()
    f = instab.preprocess([a], size, offset=(0.5, -1.0, 2.0))[0]
    np.testing.assert_array_equal(f[:, 0], np.broadcast_to(np.float32([0.5, -1.0, 2.0]), (10, 3)))


def test_strided_inputs():
    a = np.random.default_rng(6).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    views = [a[::2, ::3], a[5:40, 10:70], a[:, ::-1], np.asfortranarray(a)]
    got = instab.preprocess(views, 17, dtype="uint8")
    want = preprocess_ref([np.ascontiguousarray(v) for v in views], 17, dtype="uint8")
    np.testing.assert_array_equal(got, want)


def _pillow_pipeline(im: Image.Image, size: int = 224, crop: float = 0.875) -> np.ndarray:
    """What a Pillow-based classifier pipeline does (torchvision Resize + CenterCrop on PIL)."""
    w, h = im.size
    s = round(size / crop)
    nw, nh = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
    r = im.resize((nw, nh), Image.BILINEAR)
    left, top = round((nw - size) / 2), round((nh - size) / 2)
    return np.asarray(r.crop((left, top, left + size, top + size)))


def test_matches_pillow_on_real_images(samples_dir):
    # The documented figure: max abs difference vs Pillow on the 800 shared JPEGs is 0.
    files = sorted(samples_dir.glob("*.JPEG"))
    assert len(files) >= 100
    pil = [Image.open(f).convert("RGB") for f in files]
    arrays = [np.asarray(im) for im in pil]
    got = instab.preprocess(arrays, 224, dtype="uint8")
    want = np.stack([_pillow_pipeline(im) for im in pil])
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() == 0, f"max abs diff vs Pillow {diff.max()} on {np.count_nonzero(diff)} values"
    # float output is the uint8 result scaled
    f = instab.preprocess(arrays[:16], 224, layout="nchw")
    np.testing.assert_array_equal(f, (want[:16].astype(np.float32) * np.float32(1 / 255)).transpose(0, 3, 1, 2))


def test_other_crops_and_sizes_match_pillow_on_real_images(samples_dir):
    files = sorted(samples_dir.glob("*.JPEG"))[::40]
    pil = [Image.open(f).convert("RGB") for f in files]
    arrays = [np.asarray(im) for im in pil]
    for size, crop in [(224, 1.0), (299, 0.875), (96, 0.875), (320, 0.95)]:
        got = instab.preprocess(arrays, size, crop=crop, dtype="uint8")
        want = np.stack([_pillow_pipeline(im, size, crop) for im in pil])
        np.testing.assert_array_equal(got, want)


GOOD = np.zeros((4, 4, 3), np.uint8)


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        (dict(images=[]), ValueError, "images: empty"),
        (dict(images=np.zeros((0, 4, 4, 3), np.uint8)), ValueError, "images: empty"),
        (dict(images=[GOOD.astype(np.float32)]), TypeError, "images[0]: expected uint8"),
        (dict(images=np.zeros((2, 4, 4, 3), np.float32)), TypeError, "images: expected uint8"),
        (dict(images=[GOOD, np.zeros((4, 4, 2), np.uint8)]), ValueError, "images[1]"),
        (dict(images=[np.zeros((0, 4, 3), np.uint8)]), ValueError, "at least 1x1"),
        (dict(images=[np.zeros((4, 0), np.uint8)]), ValueError, "at least 1x1"),
        (dict(images=GOOD), ValueError, "wrap a single image"),
        (dict(images=[[1, 2]]), TypeError, "images[0]"),
        (dict(images="x"), TypeError, "images"),
        (dict(size=0), ValueError, "size"),
        (dict(size=(3, 0)), ValueError, "size"),
        (dict(size=(3, 2, 1)), TypeError, "size"),
        (dict(size=2.5), TypeError, "size"),
        (dict(crop=0.0), ValueError, "crop"),
        (dict(crop=1.5), ValueError, "crop"),
        (dict(crop=float("nan")), ValueError, "crop"),
        (dict(crop="a"), TypeError, "crop"),
        (dict(crop=1e-12), ValueError, "crop"),
        (dict(layout="chw"), ValueError, "layout"),
        (dict(dtype="float64"), ValueError, "dtype"),
        (dict(dtype="int8"), ValueError, "dtype"),
        (dict(scale=(1.0, 2.0)), ValueError, "scale"),
        (dict(offset=(1.0, 2.0, 3.0, 4.0)), ValueError, "offset"),
        (dict(scale=(1.0, float("inf"), 1.0)), ValueError, "scale"),
        (dict(offset="abc"), TypeError, "offset"),
        (dict(dtype="uint8", scale=(1.0, 1.0, 1.0)), ValueError, "scale/offset"),
        (dict(threads=-1), ValueError, "threads"),
        (dict(threads=1.5), TypeError, "threads"),
    ],
)
def test_validation(kwargs, exc, needle):
    args = dict(images=[GOOD], size=2)
    args.update(kwargs)
    with pytest.raises(exc) as info:
        instab.preprocess(args.pop("images"), args.pop("size"), **args)
    assert needle in str(info.value)


def test_core_validates_too():
    from instab._native import core
    lut = np.zeros((3, 256), np.float32)
    with pytest.raises(ValueError, match="layout"):
        core.preprocess([GOOD], 2, 2, 2, "hwc", "float32", lut)
    with pytest.raises(ValueError, match=r"images\[0\]: pixels must be packed"):
        core.preprocess([np.zeros((4, 8, 3), np.uint8)[:, ::2]], 2, 2, 2, "nhwc", "uint8", None)
    with pytest.raises(ValueError, match="lut"):
        core.preprocess([GOOD], 2, 2, 2, "nhwc", "float32", np.zeros((3, 255), np.float32))
    with pytest.raises(TypeError, match="lut"):
        core.preprocess([GOOD], 2, 2, 2, "nhwc", "float32", None)
    with pytest.raises(ValueError, match="short_side"):
        core.preprocess([GOOD], 2, 2, 0, "nhwc", "uint8", None)


def test_resize_beyond_32_bits_is_refused():
    strip = np.zeros((1, 100_000, 3), np.uint8)
    with pytest.raises(ValueError, match="beyond 2"):
        instab.preprocess([strip], 224, crop=224 / 30_000)


def test_installed_pillow_is_the_one_preprocessing_reproduces():
    # The exact comparisons above assume Pillow 13's pass order; pyproject.toml pins it.
    assert int(Image.__version__.split(".")[0]) >= 13
