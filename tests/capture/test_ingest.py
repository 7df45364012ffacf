"""The one ingest path: what an accepted photo leaves (original, crop, database row, manifest), and that a
rejected one leaves nothing, with the status the API answers."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from instab._shared.decode import register_heif
from instab.capture import ingest as ingest_module
from instab.capture import layout
from instab.capture.ingest import Ingest, RejectedPhoto, read_upload
from instab.capture.state import SessionState
from instab.io.labels import read_labels_csv
from instab.io.manifest import read_manifest
from tests.capture.conftest import FILES


def _files(out):
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
                  and p.parts[-1].split(".")[0] != "session")


def test_accepted_photo(state, shoot):
    data = shoot(0)
    got = Ingest(state).add(data, "pixel-7", user_agent="UA/1", source="file", expect=0)
    assert (got.image_id, got.image, got.device, got.shot) == (0, "n01440764_tench.JPEG", "pixel-7", 0)
    assert (state.out / got.original).read_bytes() == data  # byte for byte
    assert got.original == "originals/pixel-7/n01440764_tench_0.jpg"
    crop = np.asarray(Image.open(state.out / got.crop))
    assert got.crop == "crops/pixel-7/n01440764_tench_0.png"
    assert crop.shape[1::-1] == layout((500, 375)).image_rect[2:]  # the displayed size (the tench is 500x375)
    manifest = read_manifest(state.out / "manifest.csv")
    assert not manifest.errors
    assert [(r.image_id, r.environment, r.repeat, r.labels, r.path.name) for r in manifest.rows] == [
        ("n01440764_tench.JPEG", "pixel-7", 0, (0,), "n01440764_tench_0.png")]
    (photo,) = state.photos()
    assert (photo.user_agent, photo.source, photo.markers) == ("UA/1", "file", 4) and photo.edge_width < 4
    # the device's crops are a labelled image folder (for `instab mitigate --pair-images` and the like)
    items, errors = read_labels_csv(state.out / "crops" / "pixel-7" / "labels.csv")
    assert not errors and [(i.path.name, i.labels) for i in items] == [("n01440764_tench_0.png", (0,))]


def test_shots_count_up_and_duplicates_are_refused(state, shoot):
    ingest = Ingest(state)
    assert [ingest.add(shoot(1, seed=s), "a").shot for s in range(3)] == [0, 1, 2]
    assert ingest.add(shoot(1), "b", shot=5).shot == 5
    with pytest.raises(RejectedPhoto, match="shot 5 of image 1 from b was already accepted") as info:
        ingest.add(shoot(1), "b", shot=5)
    assert info.value.status == 409
    assert ingest.add(shoot(1), "b").shot == 0
    rows = read_manifest(state.out / "manifest.csv").rows
    assert sorted((r.environment, r.repeat) for r in rows) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 5)]


def test_exif_and_heic(state, shoot):
    image = Image.open(io.BytesIO(shoot(2)))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131] = "Google", "Pixel 7", "HDR+ 1.0"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, exif=exif)
    got = Ingest(state).add(buffer.getvalue(), "pixel-7")
    assert (got.make, got.model) == ("Google", "Pixel 7") and state.photos()[0].software == "HDR+ 1.0"
    assert register_heif() is None
    heic = io.BytesIO()
    image.save(heic, format="HEIF", quality=90)
    got = Ingest(state).add(heic.getvalue(), "iphone-15")
    assert got.original.endswith(".heic") and (state.out / got.original).read_bytes() == heic.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header says width x height: a decompression bomb's shape, cheap to make."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="GIF")
    return buffer.getvalue()


@pytest.mark.parametrize("make, status, words", [
    (lambda shoot: b"", 400, "the upload is empty"),
    (lambda shoot: b"%PDF-1.7 not a photo" * 10, 415, "not an image"),
    (lambda shoot: _gif(), 415, "unsupported file type GIF"),
    (lambda shoot: _png_claiming(10000, 8000), 413, "10000x8000 pixels is over the limit of 64000000"),
    (lambda shoot: _png_claiming(30000, 30000), 413, "more pixels than the limit of 64000000"),
    (lambda shoot: shoot(0)[:20000], 415, "cannot decode it"),
    (lambda shoot: shoot(0, yaw=0, blur=5.0), 422, "too blurred"),
    (lambda shoot: shoot(1), 409, "wrong image: the photo shows image 1"),
    (lambda shoot: shoot(0, frame_of=1)[:0] + _jpeg_of_noise(), 422, "no markers found"),
])
def test_rejected_photos_leave_nothing(state, shoot, make, status, words):
    data = make(shoot)
    before = _files(state.out)
    with pytest.raises(RejectedPhoto, match=words) as info:
        Ingest(state).add(data, "pixel-7", expect=0)
    assert info.value.status == status
    assert _files(state.out) == before and state.photos() == []


def _jpeg_of_noise() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_size_limit(state, shoot, monkeypatch):
    data = shoot(0)
    monkeypatch.setattr(ingest_module, "MAX_UPLOAD_BYTES", len(data) - 1)
    with pytest.raises(RejectedPhoto, match="over the limit") as info:
        read_upload(data)
    assert info.value.status == 413


@pytest.mark.parametrize("device", ["../evil", "..", ".", "a/b", "a\\b", "", "x" * 41, ".hidden", "nul\x00",
                                    "ümlaut", "a b", None, 7])
def test_device_names_cannot_escape(state, shoot, device, tmp_path):
    with pytest.raises(RejectedPhoto, match="device: expected 1-40 letters") as info:
        Ingest(state).add(shoot(0), device)
    assert info.value.status == 400
    assert not (tmp_path / "evil").exists() and _files(state.out) == []


def test_the_session_survives_a_restart(state, shoot, images):
    Ingest(state).add(shoot(0), "a")
    state.move(1)
    token, out = state.token, state.out
    state.close()
    again = SessionState.open(out)
    try:
        assert again.token == token and again.current == 1 and again.repeats == 2
        assert [im.name for im in again.images] == list(FILES)
        assert [(p.device, p.image_id, p.shot) for p in again.photos()] == [("a", 0, 0)]
        assert Ingest(again).add(shoot(0), "a").shot == 1  # shots go on where they were
        assert len(read_manifest(out / "manifest.csv").rows) == 2
    finally:
        again.close()
    with pytest.raises(ValueError, match="already holds a capture session"):
        SessionState.create(out, [], size=(1920, 1080))
