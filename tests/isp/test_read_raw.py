"""``read_raw`` reads only files with a recognised raw signature, and fails with stable messages naming the file.

Regressions: the shared headerless ``.raw`` frames came back as a 768x1024 mosaic
of 8-bit values (LibRaw guessed a format from the file size); a missing path gave
``LibRawTooBigError``; bytes gave an AttributeError; and the message for a DNG
without a colour-filter pattern depended on the files read before it.
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest

from instab import isp
from instab.isp.dng import RAW_SIGNATURES, raw_format

_CFA_PATTERN = 33422


def _dng(tmp_path, pattern="rggb", size=(32, 40), name=None):
    rng = np.random.default_rng(sum(size))
    image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
    mosaic, meta = isp.unprocess(image, pattern)
    path = tmp_path / (name or f"{pattern}_{size[0]}x{size[1]}.dng")
    isp.write_dng(path, mosaic, meta)
    return path, mosaic, meta


def _without_cfa_pattern(src, dst):
    """The DNG ``src`` with its CFAPattern tag renamed to an unknown one: LibRaw then has no pattern of its own."""
    data = bytearray(src.read_bytes())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == _CFA_PATTERN:
            struct.pack_into("<H", data, entry, 65000)
            break
    else:
        raise AssertionError("no CFAPattern tag")
    dst.write_bytes(bytes(data))
    return dst


def test_headerless_frames_are_refused_and_read_with_explicit_geometry(raw_dir):
    meta = json.loads((raw_dir / "meta.json").read_text())
    for name in meta["files"]:
        with pytest.raises(ValueError, match=rf"{name}: not a recognised raw file .*read_headerless"):
            isp.read_raw(raw_dir / name)
        mosaic = isp.read_headerless(raw_dir / name, meta["height"], meta["width"])
        assert mosaic.shape == (meta["height"], meta["width"]) and mosaic.dtype == np.uint16
        assert int(mosaic.max()) > 255  # 14-bit data, not a guessed 8-bit format


def test_a_missing_path_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.dng does not exist"):
        isp.read_raw(tmp_path / "nothing.dng")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        isp.read_headerless(tmp_path / "nothing.raw", 4, 4)
    with pytest.raises(ValueError, match="not a file"):
        isp.read_raw(tmp_path)


def test_bytes_and_file_objects_read_like_the_file(tmp_path):
    path, mosaic, meta = _dng(tmp_path, "gbrg")
    for source in (path, str(path), path.read_bytes(), bytearray(path.read_bytes()), io.BytesIO(path.read_bytes())):
        back, meta2 = isp.read_raw(source)
        np.testing.assert_array_equal(back, mosaic)
        assert meta2.pattern == "gbrg" and meta2.black_level == meta.black_level
    with pytest.raises(ValueError, match="^raw bytes: not a recognised raw file"):
        isp.read_raw(b"not a raw file at all" * 10)
    with pytest.raises(ValueError, match="^raw bytes: LibRaw cannot decode this DNG/TIFF file"):
        isp.read_raw(b"II*\x00" + bytes(200))
    with pytest.raises(TypeError, match="file name, bytes or a binary file"):
        isp.read_raw(42)


def test_a_dng_without_a_cfa_pattern_gets_one_message_whatever_was_read_before(tmp_path):
    bad = _without_cfa_pattern(_dng(tmp_path)[0], tmp_path / "nocfa.dng")
    messages = []
    # The same file after nothing, after DNGs of other patterns and sizes, and after a refused headerless file.
    for before in (None, _dng(tmp_path, "bggr")[0], _dng(tmp_path, "grbg", (64, 48))[0], tmp_path / "junk.raw"):
        if before is not None:
            if before.suffix == ".raw":
                before.write_bytes(bytes(4096))
            try:
                isp.read_raw(before)
            except ValueError:
                pass
        with pytest.raises(ValueError) as info:
            isp.read_raw(bad)
        messages.append(str(info.value))
    assert len(set(messages)) == 1, messages
    assert messages[0].startswith(f"{bad}: not a 2x2 RGB Bayer sensor")


def test_libraw_errors_and_not_implemented_become_the_documented_value_error(tmp_path, monkeypatch):
    rawpy = pytest.importorskip("rawpy")
    path = _dng(tmp_path)[0]

    class NoPattern:  # what rawpy does for a colour-filter layout it cannot describe
        raw_type = rawpy.RawType.Flat
        color_desc = b"RGBG"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        @property
        def raw_pattern(self):
            raise NotImplementedError("filters: 148")

    monkeypatch.setattr(rawpy, "imread", lambda source: NoPattern())
    with pytest.raises(ValueError, match=r"rggb_32x40\.dng: not a 2x2 RGB Bayer sensor \(X-Trans"):
        isp.read_raw(path)

    def too_big(source):
        raise rawpy.LibRawTooBigError("state-dependent text")

    monkeypatch.setattr(rawpy, "imread", too_big)
    with pytest.raises(ValueError) as info:
        isp.read_raw(path)
    assert str(info.value) == f"{path}: LibRaw cannot decode this DNG/TIFF file (corrupt or unsupported)"


@pytest.mark.parametrize(
    "header, fmt",
    [
        (b"II*\x00\x08\x00\x00\x00CR\x02\x00", "DNG/TIFF"),  # CR2 (and DNG, NEF, ARW, PEF)
        (b"MM\x00*\x00\x00\x00\x08\x00\x00\x00\x00", "DNG/TIFF"),
        (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01", "CR3"),
        (b"FUJIFILMCCD-RAW 0201", "RAF"),
        (b"IIRO\x08\x00\x00\x00\x00\x00\x00\x00", "ORF"),
        (b"IIU\x00\x08\x00\x00\x00\x00\x00\x00\x00", "RW2"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", None),
        (bytes(16), None),
        (b"", None),
    ],
)
def test_recognised_signatures(header, fmt):
    assert raw_format(header) == fmt
    assert {f for f, _, _ in RAW_SIGNATURES} == {"DNG/TIFF", "CR3", "RAF", "ORF", "RW2"}
