"""The one image decoder: paths, bytes and arrays; every format the codecs write; HEIF in a fresh process."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import instab
import instab.environments.codecs as C
from instab._shared.decode import as_rgb_array, decode, register_heif


def _image(h: int = 24, w: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 6, yy * 10, (xx + yy) * 4], -1).clip(0, 255).astype(np.uint8)


def _pillow(data: bytes, mode: str = "RGB") -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert(mode))


def test_top_level_decode_is_the_shared_decoder_plus_raw_files():
    from instab.isp.rawfile import decode as raw_aware_decode

    # instab.decode reads camera raw files too, and hands every other file to the one decoder.
    assert instab.decode is raw_aware_decode
    assert C.decode is decode  # the codecs module re-exports it, no second decoder
    image = _image()
    np.testing.assert_array_equal(instab.decode(C.encode(image, "png")), decode(C.encode(image, "png")))


@pytest.mark.parametrize("fmt", C.FORMATS)
def test_bytes_and_paths_decode_like_pillow(fmt, tmp_path):
    assert register_heif() is None
    data = C.encode(_image(), fmt)
    want = _pillow(data)
    np.testing.assert_array_equal(decode(data), want)
    np.testing.assert_array_equal(decode(memoryview(data)), want)
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(data)
    np.testing.assert_array_equal(decode(path), want)
    np.testing.assert_array_equal(decode(str(path)), want)


def test_channels():
    rgba = np.dstack([_image(), np.full(_image().shape[:2], 200, np.uint8)])
    data = C.encode(rgba, "png")
    assert decode(data).shape == (24, 40, 3)
    np.testing.assert_array_equal(decode(data, channels=4), rgba)
    np.testing.assert_array_equal(decode(data, channels=1)[:, :, 0], _pillow(data, "L"))
    with pytest.raises(ValueError, match="channels"):
        decode(data, channels=2)
    with pytest.raises(ValueError, match="channels"):
        decode(_image(), channels=1)


def test_arrays_are_checked_not_decoded():
    x = _image()
    np.testing.assert_array_equal(decode(x), x)
    np.testing.assert_array_equal(decode(x[:, :, 0]), np.repeat(x[:, :, :1], 3, axis=2))
    np.testing.assert_array_equal(as_rgb_array(np.dstack([x, x[:, :, :1]])), x)
    with pytest.raises(TypeError, match="uint8"):
        decode(x.astype(np.float32))
    with pytest.raises(TypeError, match="expected a path"):
        decode(3)
    with pytest.raises(UnidentifiedImageError):
        decode(b"not an image")


def test_exif_orientation_is_not_applied():
    x = _image()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW" on display
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "PNG", exif=exif)
    assert decode(buf.getvalue()).shape == x.shape  # pixels as stored


def test_heif_decodes_in_a_fresh_process_whatever_was_imported_first(tmp_path):
    path = tmp_path / "x.heic"
    path.write_bytes(C.encode(_image(), "heif"))
    code = f"""
        import sys
        import instab
        a = instab.decode({str(path)!r})
        assert "instab.environments.codecs" not in sys.modules, "the codecs were imported to decode"
        print(a.shape, a.dtype)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(24,", "40,", "3)", "uint8"]
    np.testing.assert_array_equal(decode(path), _pillow(path.read_bytes()))


def test_a_decompression_bomb_is_an_oserror(monkeypatch):
    """A header that declares far more pixels than Pillow's limit is refused as a bad file, not a crash."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 = 4096 > 2 x 1000: a "bomb"
    with pytest.raises(OSError, match="too large to decode safely"):
        decode(buf.getvalue())
