"""Environment text forms, chains (with fusion) and distort:phone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import instab.environments.codecs as C
import instab.environments.distort as D
from instab.environments.registry import Chain, EnvOutput, mix_seed, parse

CANONICAL = [
    "jpeg", "jpeg:q=85", "jpeg:q=50,subsampling=420", "jpeg:q=50..95", "png", "png:level=9", "webp", "webp:q=80",
    "webp:lossless", "heif", "heif:q=50", "avif", "avif:q=60", "brightness:delta=0.1", "brightness:delta=-0.2..0.2",
    "contrast:factor=0.8..1.2", "saturation:factor=1.3", "hue:delta=-0.05..0.05", "gamma:g=2.2",
    "noise:gaussian,sigma=0.2", "noise:gaussian,sigma=0.01..0.1", "noise:poisson,shot=0.01",
    "noise:poisson,shot=0.01,read=0.002", "distort:phone", "distort:phone,strength=0.5",
    "distort:phone,hue=-0.1..0.1,q=70..90", "distort:phone+jpeg:q=50", "brightness:delta=0.1+contrast:factor=1.2+png",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_text_round_trips(text):
    env = parse(text)
    assert str(env) == text
    assert parse(str(env)) == env


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("JPEG:q=85", "jpeg:q=85"),
        ("jpeg:subsampling=420,q=50", "jpeg:q=50,subsampling=420"),
        (" jpeg : q = 085 ", "jpeg:q=85"),
        ("brightness:delta=.10", "brightness:delta=0.1"),
        ("contrast:factor=1.0", "contrast:factor=1"),
        ("noise:gaussian,sigma=0.1..0.1", "noise:gaussian,sigma=0.1"),
        ("noise:poisson,read=0.01,shot=0.02", "noise:poisson,shot=0.02,read=0.01"),
        ("distort:phone,q=60..80,strength=1.0", "distort:phone,strength=1,q=60..80"),
    ],
)
def test_other_spellings_become_canonical(text, canonical):
    assert str(parse(text)) == canonical


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty text"),
        ("j/peg:q=1", "not a name"),
        ("jpeg:", "nothing after"),
        ("jpeg:q=", "key=value"),
        ("jpeg:q=85,,", "empty option"),
        ("jpeg:q=85,q=90", "given twice"),
        ("jpeg+", "empty part"),
        ("jpg:q=85", "unknown kind 'jpg'"),
        ("jpeg:quality=85", "unknown parameter 'quality'"),
        ("jpeg:q=high", "q='high' must be an integer"),
        ("jpeg:q=0", "1..100"),
        ("jpeg:subsampling=411", "444, 422, 420"),
        ("png:q=5", "unknown parameter 'q'"),
        ("webp:lossy", "unknown option 'lossy'"),
        ("brightness", "'delta' is required"),
        ("brightness:delta=1.5", "-1 <= lo <= hi <= 1"),
        ("brightness:delta=0.3..0.1", "lo <= hi"),
        ("contrast:factor=abc", "number or lo..hi"),
        ("hue:delta=nan", "finite"),
        ("noise:sigma=0.1", "gaussian' or 'poisson"),
        ("noise:gaussian,poisson,sigma=0.1", "exactly one noise model"),
        ("noise:gaussian", "'sigma' is required"),
        ("noise:gaussian,shot=0.1", "unknown parameter 'shot'"),
        ("distort:camera", "unknown option 'camera'"),
        ("distort:phone,strength=3", "strength must lie in"),
        ("distort:phone,q=0..50", "1..100"),
    ],
)
def test_parse_errors_say_what_was_wrong(text, match):
    with pytest.raises(ValueError, match=match):
        parse(text)


def test_parse_rejects_non_strings():
    with pytest.raises(TypeError, match="string"):
        parse(85)


def images(n=4, h=24, w=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_distortion_chain_is_fused_with_step_seeds():
    x = images()
    env = parse("hue:delta=-0.2..0.2+noise:gaussian,sigma=0.05+contrast:factor=0.5..1.5")
    assert isinstance(env, Chain)
    out = env.apply(x, seed=11, threads=2)
    ops = [(p.ops[0], mix_seed(11, k)) for k, p in enumerate(env.parts)]
    np.testing.assert_array_equal(out.images, D.apply_seeded(x, ops)[0])
    assert out.sizes is None and out.errors == [None] * 4


def test_chain_with_codec_between_distortions():
    x = images()
    env = parse("brightness:delta=0.1+jpeg:q=60+noise:gaussian,sigma=0.03")
    out = env.apply(x, seed=2)
    step0 = parse("brightness:delta=0.1").apply(x, seed=mix_seed(2, 0))
    step1 = parse("jpeg:q=60").apply(step0.images, seed=mix_seed(2, 1))
    step2 = parse("noise:gaussian,sigma=0.03").apply(step1.images, seed=mix_seed(2, 2))
    np.testing.assert_array_equal(out.images, step2.images)
    np.testing.assert_array_equal(out.sizes, step1.sizes)


def test_chain_keeps_per_item_errors():
    rgba = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    rgb = rgba[..., :3].copy()
    out = parse("jpeg:q=80+brightness:delta=0.1").apply([rgb, rgba])
    assert out.errors[0] is None and "RGBA" in out.errors[1]
    assert out.images[1] is None and out.images[0].shape == rgb.shape


def test_batch_split_and_threads_give_identical_results():
    x = images(6, 30, 26, seed=4)
    for text in ("distort:phone", "noise:poisson,shot=0.02,read=0.01+webp:q=70", "contrast:factor=0.5..1.5"):
        env = parse(text)
        whole = env.apply(x, seed=3, threads=1)
        other = env.apply(x, seed=3, threads=3)
        np.testing.assert_array_equal(whole.images, other.images)
        a = env.apply(x[:2], seed=3, first_index=0)
        b = env.apply(x[2:], seed=3, first_index=2)
        np.testing.assert_array_equal(np.concatenate([a.images, b.images]), whole.images)
        if whole.sizes is not None:
            np.testing.assert_array_equal(np.concatenate([a.sizes, b.sizes]), whole.sizes)


def test_phone_is_distortions_then_random_jpeg():
    x = images(5, 32, 32, seed=5)
    env = parse("distort:phone")
    out = env.apply(x, seed=9)
    assert isinstance(out, EnvOutput) and out.errors == [None] * 5
    distorted = D.apply(x, env.ops, seed=9)
    qualities = C.draw_qualities((50, 95), 5, seed=mix_seed(9, 4), first_index=0)
    for i, q in enumerate(qualities):
        ref = C.roundtrip(distorted[i : i + 1], "jpeg", quality=q)
        np.testing.assert_array_equal(out.images[i], ref.images[0])
        assert out.sizes[i] == ref.sizes[0]
    assert [str(op) for op in env.ops] == [
        "hue:delta=-0.05..0.05", "contrast:factor=0.7..1.3", "brightness:delta=-0.1..0.1", "saturation:factor=0.7..1.3",
    ]


def test_phone_strength_scales_ranges():
    env = parse("distort:phone,strength=0.5")
    assert [op.ranges[0] for op in env.ops] == [(-0.025, 0.025), (0.85, 1.15), (-0.05, 0.05), (0.85, 1.15)]
    assert env.jpeg.quality == (72, 95)
    zero = parse("distort:phone,strength=0")
    assert zero.jpeg.quality == (95, 95)
    # Stronger settings move images further from the original.
    x = images(8, 32, 32, seed=6)
    err = [np.abs(parse(f"distort:phone,strength={s}").apply(x, seed=1).images.astype(int) - x).mean()
           for s in (0.25, 1, 2)]
    assert err[0] < err[1] < err[2]


def test_list_input_of_different_sizes():
    rng = np.random.default_rng(7)
    items = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((20, 30), (7, 5), (1, 1))]
    for text in ("distort:phone", "noise:gaussian,sigma=0.1+avif:q=50", "gamma:g=0.7"):
        out = parse(text).apply(items, seed=1)
        assert isinstance(out.images, list) and out.errors == [None] * 3
        for a, b in zip(items, out.images, strict=True):
            assert a.shape == b.shape


def test_parsing_loads_no_heavy_dependency():
    """``import instab.environments`` and parsing a codec stay light (fresh interpreter: this one imported all)."""
    code = textwrap.dedent(
        """
        import json, sys
        heavy = ("onnxruntime", "onnx", "matplotlib", "rawpy", "pillow_heif")
        import instab.environments
        first = sorted(m for m in heavy + ("PIL",) if m in sys.modules)
        instab.environments.parse("jpeg:q=50")
        print(json.dumps([first, sorted(m for m in heavy if m in sys.modules)]))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [[], []]
