"""Virtual devices: a scene photographed by a simulated phone.

A device profile chains unprocess (sRGB -> the raw mosaic the sensor would
record) -> sensor noise (fresh per shot) -> the device's ISP (white-balance
error, demosaic, colour matrix, tone curve, saturation, sharpening) -> codec
(format, quality) -> decode. Five built-in profiles are modelled on the kinds
of phones in the source study (one HEIF device, JPEG devices with different
ISPs and qualities, a WebP device); users add their own from a TOML file::

    [device.my-phone]
    demosaic = "ha"            # bilinear | malvar | ha
    wb_error = [1.03, 1.0, 0.97]
    shot_noise = 0.0002        # variance per unit of linear signal
    read_noise = 1e-5
    tone = "smoothstep"        # smoothstep | none
    gamma = "srgb"             # srgb | bt709
    saturation = 1.1
    sharpen = 0.5              # unsharp-mask amount, 0 = none
    codec = "jpeg:q=90"        # any codec environment text
    # the sensor (default: instab's 14-bit Nikon sensor, instab.isp.nikon_meta)
    pattern = "rggb"           # rggb | grbg | gbrg | bggr
    color_matrix = [[1.65, -0.45, -0.2], [-0.18, 1.6, -0.42], [0.01, -0.44, 1.43]]  # camera -> linear sRGB
    wb_gains = [1.95, 1.0, 1.34]   # the camera's as-shot white balance
    black_level = [600.0, 600.0, 600.0, 600.0]  # per 2x2 position (or one number)
    white_level = 15520.0

``instab devices from-raw FILE.dng`` writes such a table from a real camera's raw
file (:func:`from_raw`, :mod:`instab.isp.profile_from_raw`).

Repeat shots: ``shot`` selects a fresh sensor-noise draw of the same scene, as
two photos taken a second apart. Randomness is keyed by (seed, device, shot,
image index), so results do not depend on threads or batch splits.
"""

from __future__ import annotations

import json
import tomllib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from instab import isp
from instab._native import core
from instab._shared.validation import check_threads
from instab.environments import distort
from instab.environments.registry import Environment, EnvOutput, Spec, as_image_list, image_items, parse, register
from instab.isp.profile_from_raw import read_sensor_profile, xyz_to_cam_from_rgb


@dataclass(frozen=True)
class DeviceProfile:
    """A virtual device: its sensor noise, ISP (demosaic, white-balance error, tone, sharpening) and codec.

    The fields are the keys of a ``[device.NAME]`` TOML table (see the module docstring).
    """

    name: str
    demosaic: str = "malvar"
    wb_error: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shot_noise: float = 2e-4  # about 2 levels of 255 per pixel after development: a denoised phone photo
    read_noise: float = 1e-6
    tone: str = "smoothstep"
    gamma: str = "srgb"
    saturation: float = 1.0
    sharpen: float = 0.0
    codec: str = "jpeg:q=90"
    pattern: str = "rggb"
    # The sensor; None = instab's default sensor (isp.nikon_meta). color_matrix is camera -> linear sRGB.
    color_matrix: tuple[tuple[float, float, float], ...] | None = None
    wb_gains: tuple[float, float, float] | None = None
    black_level: tuple[float, float, float, float] | None = None
    white_level: float | None = None

    def __post_init__(self) -> None:
        where = f"device {self.name!r}"
        if self.demosaic not in isp.DEMOSAICS:
            raise ValueError(f"{where}: demosaic must be one of {isp.DEMOSAICS}, got {self.demosaic!r}")
        wb = tuple(float(v) for v in self.wb_error)
        if len(wb) != 3 or min(wb) <= 0:
            raise ValueError(f"{where}: wb_error must be three positive factors, got {self.wb_error!r}")
        object.__setattr__(self, "wb_error", wb)
        for key in ("shot_noise", "read_noise", "sharpen"):
            if float(getattr(self, key)) < 0:
                raise ValueError(f"{where}: {key} must be >= 0, got {getattr(self, key)!r}")
        if float(self.saturation) <= 0:
            raise ValueError(f"{where}: saturation must be > 0, got {self.saturation!r}")
        _ = self._codec  # parse now: a bad codec text raises a clear error here
        if self.color_matrix is not None:
            object.__setattr__(self, "color_matrix", tuple(tuple(float(v) for v in row) for row in self.color_matrix))
        for key in ("wb_gains", "black_level"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, tuple(float(v) for v in np.asarray(getattr(self, key)).reshape(-1)))
        if self.white_level is not None:
            object.__setattr__(self, "white_level", float(self.white_level))
        try:
            _ = self.sensor_meta  # check the sensor fields now, with RawMeta's messages
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None

    @cached_property
    def sensor_meta(self) -> isp.RawMeta:
        """The simulated sensor: this profile's levels, white balance and colour matrix over the default sensor."""
        base = isp.nikon_meta(self.pattern)
        xyz = base.xyz_to_cam if self.color_matrix is None else xyz_to_cam_from_rgb(self.color_matrix)
        return base.replace(
            black_level=base.black_level if self.black_level is None else self.black_level,
            white_level=base.white_level if self.white_level is None else self.white_level,
            wb_gains=base.wb_gains if self.wb_gains is None else self.wb_gains,
            xyz_to_cam=xyz,
        )

    @cached_property
    def _codec(self) -> Environment:
        """The codec environment of :attr:`codec` (parsed once)."""
        return parse(self.codec)

    def _seed(self, seed: int, shot: int) -> int:
        # A stable per-(device, shot) key, so devices and shots draw independent noise.
        return (int(seed) * 1_000_003 + zlib.crc32(self.name.encode()) * 8191 + int(shot) * 131) % (1 << 63)

    def capture_raw(self, images: Any, seed: int = 0, shot: int = 0, threads: int | None = None,
                    first_index: int = 0) -> tuple[Any, isp.RawMeta]:
        """The sensor's view: noisy Bayer mosaics and the metadata to develop them."""
        return isp.unprocess(images, self.pattern, seed=self._seed(seed, shot), meta=self.sensor_meta,
                             shot_noise=float(self.shot_noise),
                             read_noise=float(self.read_noise), threads=threads, first_index=first_index)

    def develop(self, mosaics: Any, meta: isp.RawMeta, threads: int | None = None) -> Any:
        """This device's ISP applied to raw mosaics (before the codec)."""
        threads = check_threads(threads)
        gains = tuple(g * e for g, e in zip(meta.wb_gains, self.wb_error, strict=True))
        rgb = isp.develop(mosaics, meta, self.demosaic, wb=gains, gamma=self.gamma, tone=self.tone, threads=threads)
        listed, is_batch = as_image_list(rgb if not isinstance(rgb, np.ndarray) or rgb.ndim == 4 else rgb[None])
        items = [im for im in listed if im is not None]  # none missing: isp.develop refuses a None mosaic
        if self.saturation != 1.0:
            out = distort.saturation(list(items), float(self.saturation), threads=threads)
            items = list(out.images if hasattr(out, "images") else out)
        if self.sharpen > 0:
            items = [unsharp(im, float(self.sharpen), threads) for im in items]
        return np.stack(items) if is_batch else items

    def capture(self, images: Any, seed: int = 0, shot: int = 0, threads: int | None = None,
                first_index: int = 0) -> EnvOutput:
        """Photograph ``images`` (uint8 NHWC or a list of HWC) with this device: decoded images + file sizes.

        An image the device cannot take (missing, not uint8 HWC, under 2x2 for the
        Bayer mosaic) gets a per-item error in ``errors``; the others are captured.
        """
        threads = check_threads(threads)
        # Real raw captures (isp.RawImage items) skip unprocessing and noise: the ISP gets their mosaic.
        listed = isinstance(images, (list, tuple))
        real = {i: im for i, im in enumerate(images) if isinstance(im, isp.RawImage)} if listed else {}
        items, is_batch, errors = image_items([None if i in real else im for i, im in enumerate(images)]
                                              if real else images)
        developed: list[np.ndarray | None] = [None] * len(items)
        for i, im in enumerate(items):  # one image at a time: sizes differ, and index i keys its noise
            if im is None and i not in real:
                continue
            errors[i] = None
            try:
                if i in real:
                    mosaic, meta = real[i].mosaic[None], real[i].meta
                else:
                    one, meta = self.capture_raw(im, seed, shot, threads, first_index + i)
                    mosaic = one[None]
                developed[i] = self.develop(mosaic, meta, threads)[0]
            except (ValueError, TypeError) as exc:  # e.g. too small for the mosaic: this item only
                errors[i] = f"device:{self.name}: {exc}"
        ok = [i for i, d in enumerate(developed) if d is not None]
        coded = self._codec.apply([developed[i] for i in ok], seed=self._seed(seed, shot),
                                  threads=threads, first_index=first_index)
        out_images: list[np.ndarray | None] = [None] * len(items)
        sizes = np.full(len(items), -1, dtype=np.int64)
        for j, i in enumerate(ok):
            out_images[i] = coded.images[j]
            sizes[i] = coded.sizes[j] if coded.sizes is not None else -1
            errors[i] = coded.errors[j] if coded.errors else None
        if is_batch:
            batch = np.zeros(np.asarray(images).shape[:3] + (3,), dtype=np.uint8)
            for i, im in enumerate(out_images):
                if im is not None:
                    batch[i] = im
            return EnvOutput(batch, sizes, errors)
        return EnvOutput(out_images, sizes, errors)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def unsharp(image: np.ndarray, amount: float, threads: int | None = None) -> np.ndarray:
    """Unsharp mask with a 3x3 binomial blur: x + amount * (x - blur(x)), edges replicated.

    ``image`` is uint8 ``[H, W, C]`` or a batch ``[N, H, W, C]``; float32 arithmetic,
    rounded half to even and clipped to 0..255 (in C++, bit-identical to the numpy
    ``unsharp_reference`` in tests/reference.py for any ``threads``).
    """
    a = np.ascontiguousarray(image)
    if a.dtype != np.uint8 or a.ndim not in (3, 4):
        raise ValueError(f"image: expected uint8 [H, W, C] or [N, H, W, C], got {a.dtype} {a.shape}")
    out = core.unsharp(a if a.ndim == 4 else a[None], float(amount), check_threads(threads))
    return out if a.ndim == 4 else out[0]


BUILTIN: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        # A flagship shooting HEIF: good demosaic, neutral colour, light sharpening.
        DeviceProfile("phone-heif", demosaic="malvar", saturation=1.05, sharpen=0.3, codec="heif:q=60"),
        # A JPEG phone with a vivid, warm look and strong sharpening at high quality.
        DeviceProfile("phone-vivid", demosaic="ha", wb_error=(1.05, 1.0, 0.95), saturation=1.2, sharpen=0.7,
                      codec="jpeg:q=95"),
        # A mid-range JPEG phone: cheap bilinear demosaic, cool cast, no tone curve, 4:2:0 at quality 85.
        DeviceProfile("phone-mid", demosaic="bilinear", wb_error=(0.96, 1.0, 1.04), tone="none",
                      codec="jpeg:q=85,subsampling=420"),
        # A budget phone with a small noisy sensor and aggressive compression.
        DeviceProfile("phone-budget", demosaic="malvar", shot_noise=8e-4, read_noise=4e-6, sharpen=0.4,
                      codec="jpeg:q=70,subsampling=420"),
        # A phone whose camera app saves WebP, with BT.709 transfer.
        DeviceProfile("phone-webp", demosaic="ha", gamma="bt709", saturation=1.1, sharpen=0.2, codec="webp:q=80"),
    )
}
#: Two more phones, outside the built-in five: ``instab mitigate`` never trains on them and evaluates
#: on them, to show that what it learns carries to phones it has not seen.
HELD_OUT: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        # A small sensor at high gain: strong noise, cheap demosaic, bluish cast, hard JPEG 4:2:0.
        DeviceProfile("phone-night", demosaic="bilinear", wb_error=(1.0, 1.0, 1.08), shot_noise=1.5e-3,
                      read_noise=1e-5, sharpen=0.5, codec="jpeg:q=75,subsampling=420"),
        # A warm, flat rendering (no tone curve, low saturation), heavy sharpening, WebP at quality 60.
        DeviceProfile("phone-warm", demosaic="ha", wb_error=(1.08, 1.0, 0.92), tone="none", saturation=0.9,
                      sharpen=1.0, codec="webp:q=60"),
    )
}
_PROFILES: dict[str, DeviceProfile] = {**BUILTIN, **HELD_OUT}


def builtin_names() -> list[str]:
    """Names of the built-in profiles, in order."""
    return list(BUILTIN)


def names() -> list[str]:
    """Every profile a run uses by default: built-in and loaded from TOML (not the held-out phones, which
    ``device:NAME`` still accepts)."""
    return [n for n in _PROFILES if n not in HELD_OUT or _PROFILES[n] is not HELD_OUT[n]]


def get(name: str) -> DeviceProfile:
    """The profile named ``name`` (built in or loaded from TOML); ValueError for an unknown name."""
    if name not in _PROFILES:
        raise ValueError(f"device: unknown profile {name!r} (known: {', '.join(_PROFILES)})")
    return _PROFILES[name]


def load_profiles(path: str | Path, register_them: bool = True) -> list[DeviceProfile]:
    """Read ``[device.NAME]`` tables from a TOML file (and make them available to ``device:NAME``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"profiles: {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"profiles: {path} is not valid TOML ({exc})") from None
    tables = data.get("device")
    if not isinstance(tables, Mapping) or not tables:
        raise ValueError(f"profiles: {path} has no [device.NAME] tables")
    known = {f.name for f in fields(DeviceProfile)} - {"name"}
    out = []
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            raise ValueError(f"profiles: [device.{name}] must be a table")
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"profiles: [device.{name}] has unknown key(s) {sorted(unknown)} (known: {sorted(known)})")
        values = dict(table)
        if "wb_error" in values:
            values["wb_error"] = tuple(values["wb_error"])
        out.append(DeviceProfile(name=name, **values))
    if register_them:
        for p in out:
            _PROFILES[p.name] = p
    return out


#: The sensor keys, which :func:`from_raw` reads from a raw file; the other keys are the ISP and codec.
SENSOR_KEYS = ("pattern", "black_level", "white_level", "wb_gains", "color_matrix", "shot_noise", "read_noise")
_NOT_IN_RAW = "default: not in a raw file (the camera's ISP and codec)"


def from_raw(path: str | Path, name: str) -> tuple[DeviceProfile, dict[str, str]]:
    """A device profile with a real camera's sensor, read from one of its raw files.

    Parameters
    ----------
    path : str or Path
        A raw file LibRaw reads (DNG, NEF, CR2, ...); see :mod:`instab.isp.profile_from_raw`.
    name : str
        The profile's name (letters, digits, ``-``, ``_``): used as ``device:NAME``.

    Returns
    -------
    profile, sources
        The profile (ISP and codec keys at their defaults) and, for each key, where it
        came from: ``read: ...``, ``estimated: ...`` or ``default: ...``.
    """
    if not name or not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
        raise ValueError(f"name: {name!r} must be letters, digits, '-' or '_' (it is used as device:NAME)")
    sensor = read_sensor_profile(path)
    profile = DeviceProfile(name=name, **sensor.device_fields())
    sources = {f.name: sensor.sources.get(f.name, _NOT_IN_RAW) for f in fields(DeviceProfile) if f.name != "name"}
    return profile, sources


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(float(value))  # the shortest text that reads back as the same float (TOML accepts it)


def profile_toml(profile: DeviceProfile, sources: Mapping[str, str] | None = None, header: str = "") -> str:
    """``profile`` as a ``[device.NAME]`` TOML table that :func:`load_profiles` reads back.

    Sensor keys come first; each key's ``sources`` entry (see :func:`from_raw`) is
    written as a comment after it, ``header`` (lines) as comments before the table.
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines.append(f"[device.{profile.name}]")
    keys = list(SENSOR_KEYS) + [f.name for f in fields(DeviceProfile) if f.name not in SENSOR_KEYS + ("name",)]
    for key in keys:
        value = getattr(profile, key)
        if value is None:
            continue
        note = (sources or {}).get(key)
        lines.append(f"{key} = {_toml_value(value)}" + (f"  # {note}" if note else ""))
    return "\n".join(lines) + "\n"


class DeviceEnvironment(Environment):
    """``device:NAME`` or ``device:NAME,shot=2``: a capture by a virtual device.

    A real raw capture (:class:`instab.isp.RawImage`) goes through the device's ISP
    and codec only: no unprocessing and no added noise (it has its own).
    """

    accepts_raw = True

    def __init__(self, spec: Spec):
        super().__init__(spec)
        if len(spec.words) != 1:
            raise ValueError(f"environment {spec}: name exactly one device, e.g. device:{builtin_names()[0]}")
        spec.check(words=list(_PROFILES), keys=["shot"])
        self.profile = get(spec.words[0])
        self.shot = spec.param("shot", 0, int)
        if self.shot < 0:
            raise ValueError(f"environment {spec}: shot must be >= 0")

    def apply(self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0) -> EnvOutput:
        return self.profile.capture(images, seed=seed, shot=self.shot, threads=threads, first_index=first_index)


register("device")(DeviceEnvironment)

__all__ = ["DeviceProfile", "DeviceEnvironment", "BUILTIN", "HELD_OUT", "SENSOR_KEYS", "builtin_names", "names", "get",
           "load_profiles", "from_raw", "profile_toml", "unsharp"]
