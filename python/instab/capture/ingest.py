"""The one path from a photo's bytes to a manifest row, shared by the upload API and ``instab capture import``.

Check the device name and the bytes (size, format, pixel count: a decompression-bomb
guard before anything is decoded), find the frame (:func:`locate`), check the image it
shows, then keep the original bytes untouched, the rectified crop as PNG, a row in the
session database and ``OUT/manifest.csv`` (rewritten whole from the database, atomically).
A rejected photo raises :class:`RejectedPhoto` and leaves no file and no row behind.
"""

from __future__ import annotations

import io
import os
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from instab._shared.decode import decode, register_heif
from instab.capture.detect import locate
from instab.capture.markers import MAX_EDGE_WIDTH, Located
from instab.capture.state import PhotoRecord, SessionState
from instab.io.manifest import ManifestRow, write_manifest

MAX_UPLOAD_BYTES = 40 * 1024 * 1024  # a 50 MP phone JPEG is about 25 MB
MAX_PIXELS = 64_000_000  # above any phone sensor's full resolution (50 MP = 8160 x 6144)
MAX_SHOT = 999
DEVICE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
# Pillow's format name -> the suffix the original is kept under
FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "HEIF": ".heic", "AVIF": ".avif"}
EXIF_TAGS = {"make": 0x010F, "model": 0x0110, "software": 0x0131}
MANIFEST = "manifest.csv"


class RejectedPhoto(ValueError):
    """A photo that cannot be accepted; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Accepted:
    """What an accepted photo became (paths relative to the session folder)."""

    image_id: int
    image: str
    device: str
    shot: int
    original: str
    crop: str
    edge_width: float
    markers: int
    make: str
    model: str

    def to_dict(self) -> dict[str, Any]:
        """The API's JSON answer."""
        return {"accepted": True, **asdict(self)}


def check_device(name: Any) -> str:
    """A device name as given, if it is 1-40 letters, digits, '.', '_' or '-' starting with a letter or digit."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise RejectedPhoto(f"device: expected 1-40 letters, digits, '.', '_' or '-' (starting with a letter or "
                            f"digit), got {str(name)[:60]!r}", 400)
    return name


def read_upload(data: bytes) -> tuple[Any, str, dict[str, str]]:
    """Decode uploaded bytes: (uint8 RGB array, the suffix to keep them under, EXIF make/model/software).

    Raises :class:`RejectedPhoto` for empty or oversized input, a format that is not a photo,
    more than :data:`MAX_PIXELS` pixels (read from the header, before decoding) or a broken file.
    """
    if not data:
        raise RejectedPhoto("photo: the upload is empty", 400)
    if len(data) > MAX_UPLOAD_BYTES:
        raise RejectedPhoto(f"photo: {len(data)} bytes is over the limit of {MAX_UPLOAD_BYTES}", 413)
    register_heif()
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (w, h) = img.format or "", img.size
            if fmt not in FORMATS:
                raise RejectedPhoto(f"photo: unsupported file type {fmt or 'unknown'} (send JPEG, HEIC, PNG or WebP)",
                                    415)
            if w * h > MAX_PIXELS:
                raise RejectedPhoto(f"photo: {w}x{h} pixels is over the limit of {MAX_PIXELS}", 413)
            exif = img.getexif()
            tags = {k: str(exif.get(tag, "")).strip("\x00 ")[:100] for k, tag in EXIF_TAGS.items()}
        pixels = decode(data)
    except RejectedPhoto:
        raise
    except Image.DecompressionBombError:  # Pillow's own guard, at twice its default pixel limit
        raise RejectedPhoto(f"photo: more pixels than the limit of {MAX_PIXELS} (a decompression bomb?)", 413) from None
    except UnidentifiedImageError as exc:
        raise RejectedPhoto(f"photo: not an image this server reads ({exc})", 415) from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data (Pillow raises all three)
        raise RejectedPhoto(f"photo: cannot decode it ({type(exc).__name__}: {exc})", 415) from None
    return pixels, FORMATS[fmt], tags


class Ingest:
    """Accepts photos into one session: ``add(data, device)``; thread-safe."""

    def __init__(self, state: SessionState) -> None:
        self.state = state
        self._lock = threading.Lock()

    def add(self, data: bytes, device: str, *, shot: int | None = None, user_agent: str = "", source: str = "",
            expect: int | None = None) -> Accepted:
        """Accept one photo of ``device``, or raise :class:`RejectedPhoto` saying why.

        Parameters
        ----------
        data : bytes
            The file as the phone sent it; kept byte for byte.
        device : str
            The device's name (the manifest's environment).
        shot : int, optional
            Which repeat this is; default the lowest one not yet sent for that image.
        user_agent, source : str
            The browser's user agent and how the page took the photo, recorded with it.
        expect : int, optional
            The image id on display: a photo of another image is rejected (409).
        """
        device = check_device(device)
        if shot is not None and (isinstance(shot, bool) or not isinstance(shot, int) or not 0 <= shot <= MAX_SHOT):
            raise RejectedPhoto(f"shot: expected an integer 0..{MAX_SHOT}, got {shot!r}", 400)
        pixels, suffix, tags = read_upload(data)
        found = self._locate(pixels)
        if expect is not None and found.image_id != expect:
            shown = self.state.images[expect].name if 0 <= expect < len(self.state.images) else "nothing"
            raise RejectedPhoto(f"wrong image: the photo shows image {found.image_id} "
                                f"({self.state.images[found.image_id].name}) but the display shows {expect} ({shown})",
                                409)
        with self._lock:
            return self._store(data, device, shot, (user_agent[:300], source[:40]), suffix, tags, found)

    def _locate(self, pixels: Any) -> Located:
        images = self.state.images

        def image_size(image_id: int) -> tuple[int, int]:
            if image_id >= len(images):
                raise ValueError(f"the photo shows image {image_id}, but this session has {len(images)} images: "
                                 "is it a frame of another session?")
            return images[image_id].size

        try:
            found = locate(pixels, size=self.state.size, image_size=image_size)
        except ValueError as exc:
            raise RejectedPhoto(str(exc)) from None
        if not found.edge_width <= MAX_EDGE_WIDTH:
            raise RejectedPhoto(f"too blurred: the markers' edges are {found.edge_width:.1f} pixels wide (at most "
                                f"{MAX_EDGE_WIDTH:g}); hold the phone still and let it focus")
        return found

    def _store(self, data: bytes, device: str, shot: int | None, client: tuple[str, str], suffix: str,
               tags: dict[str, str], found: Located) -> Accepted:
        state = self.state
        if shot is None:
            shot = state.next_shot(device, found.image_id)
        elif state.has_photo(device, found.image_id, shot):
            raise RejectedPhoto(f"shot {shot} of image {found.image_id} from {device} was already accepted", 409)
        stem = f"{Path(state.images[found.image_id].name).stem}_{shot}"
        original = Path("originals") / device / (stem + suffix)
        crop = Path("crops") / device / f"{stem}.png"
        written: list[Path] = []
        try:
            _write_atomic(state.out / original, data)
            written.append(state.out / original)
            buffer = io.BytesIO()
            Image.fromarray(found.crop).save(buffer, format="PNG", compress_level=1)
            _write_atomic(state.out / crop, buffer.getvalue())
            written.append(state.out / crop)
            state.add_photo(PhotoRecord(device, found.image_id, shot, original.as_posix(), crop.as_posix(),
                                        tags["make"], tags["model"], tags["software"], *client,
                                        round(found.edge_width, 3), found.markers))
        except BaseException:
            for path in written:  # nothing of a photo that was not recorded stays behind
                path.unlink(missing_ok=True)
            raise
        write_session_manifest(state)
        return Accepted(found.image_id, state.images[found.image_id].name, device, shot, original.as_posix(),
                        crop.as_posix(), round(found.edge_width, 3), found.markers, tags["make"], tags["model"])


def write_session_manifest(state: SessionState) -> Path:
    """Rewrite ``OUT/manifest.csv`` from the database: one row per accepted photo (device = environment).

    Also ``OUT/crops/<device>/labels.csv`` (file, class_index) per device: one device's crops are then a
    labelled image folder, and another device's crops, under the same names, its paired photos
    (``instab mitigate --images OUT/crops/A --labels OUT/crops/A/labels.csv --pair-images OUT/crops/B``).
    """
    photos = state.photos()
    rows = [ManifestRow(0, state.images[p.image_id].name, p.device, state.out / p.crop,
                        state.images[p.image_id].labels, p.shot) for p in photos]
    target = state.out / MANIFEST
    partial = target.with_name(MANIFEST + ".partial")
    write_manifest(partial, rows)
    os.replace(partial, target)
    by_device: dict[str, list[str]] = {}
    for p in photos:
        labels = ";".join(map(str, state.images[p.image_id].labels))
        by_device.setdefault(p.device, []).append(f"{Path(p.crop).name},{labels}\n")
    for device, lines in by_device.items():
        _write_atomic(state.out / "crops" / device / "labels.csv", ("file,class_index\n" + "".join(lines)).encode())
    return target


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


__all__ = [
    "Accepted",
    "DEVICE_PATTERN",
    "FORMATS",
    "Ingest",
    "MANIFEST",
    "MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "RejectedPhoto",
    "check_device",
    "read_upload",
    "write_session_manifest",
]
