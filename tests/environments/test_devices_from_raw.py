"""``instab devices from-raw``: a device profile read from a raw file's own sensor metadata.

DNGs are written by ``instab.isp.write_dng`` from a known :class:`instab.isp.RawMeta`;
tags it does not write (NoiseProfile, a second calibration, masked areas) are added
by rewriting its tags with tifffile.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import tifffile

from instab import isp
from instab._shared.decode import decode
from instab.cli.main import main
from instab.environments import devices
from instab.environments.registry import parse
from instab.isp.profile_from_raw import read_sensor_profile

# Tags tifffile writes itself from the image.
_STRUCTURAL = {254, 256, 257, 258, 259, 262, 273, 277, 278, 279, 282, 283, 284, 296, 305}
_DOUBLE, _LONG, _SHORT, _SRATIONAL = 12, 4, 3, 10
KNOWN = isp.RawMeta(
    pattern="gbrg", black_level=(64, 65, 66, 67), white_level=4095, wb_gains=(2.25, 1.0, 1.5),
    xyz_to_cam=((0.71, -0.18, -0.08), (-0.42, 1.21, 0.23), (-0.07, 0.17, 0.62)),
)
NOISE = (2.0e-4, 3.0e-6, 1.5e-4, 2.0e-6, 2.5e-4, 4.0e-6)  # (S, O) for the R, G and B planes


@pytest.fixture(autouse=True)
def _clean_registry(monkeypatch):
    monkeypatch.setattr(devices, "_PROFILES", dict(devices._PROFILES))  # profiles loaded here stay here


@pytest.fixture(scope="module")
def photo(samples_dir):
    return decode(str(sorted(samples_dir.glob("*.JPEG"))[0]))


def _srational(m):
    out = []
    for v in np.asarray(m, dtype=np.float64).reshape(-1):
        out += [int(round(v * 10000)), 10000]
    return out


def write_dng(path, mosaic, meta, extra=(), drop=()):
    """``isp.write_dng``'s DNG with tags added (``extra``: tifffile extratags) or removed (``drop``: codes)."""
    buf = io.BytesIO()
    isp.write_dng(buf, mosaic, meta)
    buf.seek(0)
    with tifffile.TiffFile(buf) as tif:
        tags = [(t.code, int(t.dtype), t.count, tuple(t.value) if isinstance(t.value, bytes) else t.value, True)
                for t in tif.pages.first.tags.values() if t.code not in _STRUCTURAL]
    replaced = {e[0] for e in extra} | set(drop)
    tags = [t for t in tags if t[0] not in replaced] + list(extra)
    tifffile.imwrite(path, np.ascontiguousarray(mosaic), photometric=32803, extratags=tags, metadata=None)
    return path


def _mosaic(meta, size=(48, 64), seed=0):
    image = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
    return isp.unprocess(image, meta.pattern, meta=meta)[0]


def test_profile_fields_equal_the_known_sensor(tmp_path):
    path = write_dng(tmp_path / "known.dng", _mosaic(KNOWN), KNOWN, extra=[(51041, _DOUBLE, 6, NOISE, True)])
    profile, sources = devices.from_raw(path, "known-cam")
    assert profile.pattern == "gbrg" and profile.black_level == (64, 65, 66, 67) and profile.white_level == 4095
    np.testing.assert_allclose(profile.wb_gains, KNOWN.wb_gains, rtol=1e-6)
    np.testing.assert_allclose(profile.color_matrix, KNOWN.cam_to_rgb, atol=1e-6)
    assert profile.shot_noise == pytest.approx(np.mean(NOISE[0::2])) and profile.read_noise == pytest.approx(3e-6)
    for key in devices.SENSOR_KEYS:
        assert sources[key].startswith("read: "), (key, sources[key])
    assert sources["shot_noise"] == "read: NoiseProfile, the mean of 3 colour planes"
    assert sources["codec"].startswith("default: ")
    # the simulated sensor is the camera's: unprocessing uses its levels, white balance and matrix
    meta = profile.sensor_meta
    assert meta.pattern == "gbrg" and meta.black_level == KNOWN.black_level and meta.white_level == 4095
    np.testing.assert_allclose(meta.cam_to_rgb, KNOWN.cam_to_rgb, atol=1e-6)
    mosaic, used = profile.capture_raw(np.full((8, 8, 3), 128, np.uint8))
    assert used == meta and int(np.asarray(mosaic).max()) <= 4095


def test_the_calibration_closest_to_d65_is_used(tmp_path):
    std_a = np.array([[1.1, -0.3, -0.1], [-0.5, 1.4, 0.1], [-0.1, 0.3, 0.5]])
    calibration = np.diag([1.02, 1.0, 0.97])
    extra = [(50721, _SRATIONAL, 9, _srational(std_a), True), (50778, _SHORT, 1, (17,), True),  # StdA
             (50722, _SRATIONAL, 9, _srational(KNOWN.xyz_to_cam), True), (50779, _SHORT, 1, (21,), True),  # D65
             (50724, _SRATIONAL, 9, _srational(calibration), True),
             (50965, _SRATIONAL, 9, _srational(np.eye(3)), True)]
    path = write_dng(tmp_path / "two.dng", _mosaic(KNOWN), KNOWN, extra=extra)
    sensor = read_sensor_profile(path)
    expected = KNOWN.replace(xyz_to_cam=calibration @ np.asarray(KNOWN.xyz_to_cam)).cam_to_rgb
    np.testing.assert_allclose(sensor.color_matrix, expected, atol=1e-6)
    assert sensor.sources["color_matrix"] == (
        "read: CameraCalibration2 x ColorMatrix2 (D65); ForwardMatrix2 present, not used")


def test_a_camera_layout_with_the_raw_image_in_a_subifd(tmp_path):
    """A camera's DNG: IFD0 a preview with the colour tags, the raw image and its levels in a SubIFD."""
    mosaic = _mosaic(KNOWN)
    path = write_dng(tmp_path / "flat.dng", mosaic, KNOWN)
    raw_codes = {33421, 33422, 50710, 50711, 50713, 50714, 50717}
    with tifffile.TiffFile(path) as tif:
        tags = [(t.code, int(t.dtype), t.count, tuple(t.value) if isinstance(t.value, bytes) else t.value, True)
                for t in tif.pages.first.tags.values() if t.code not in _STRUCTURAL]
    ifd0 = [t for t in tags if t[0] not in raw_codes] + [(51041, _DOUBLE, 2, (1e-4, 2e-6), True)]
    with tifffile.TiffWriter(tmp_path / "camera.dng") as w:
        w.write(np.zeros((8, 8, 3), np.uint8), photometric="rgb", subfiletype=1, subifds=1, extratags=ifd0,
                metadata=None)
        w.write(mosaic, photometric=32803, subfiletype=0, extratags=[t for t in tags if t[0] in raw_codes],
                metadata=None)
    sensor = read_sensor_profile(tmp_path / "camera.dng")
    assert sensor.black_level == (64, 65, 66, 67) and sensor.pattern == "gbrg"
    assert (sensor.shot_noise, sensor.read_noise) == (1e-4, 2e-6)
    np.testing.assert_allclose(sensor.color_matrix, KNOWN.cam_to_rgb, atol=1e-6)


def test_read_noise_is_estimated_from_masked_pixels(tmp_path):
    meta = isp.nikon_meta()
    rng = np.random.default_rng(1)
    dark = np.rint(600 + 3.0 * rng.standard_normal((16, 64))).astype(np.uint16)  # 3 DN of read noise
    full = np.vstack([dark, _mosaic(meta)])
    extra = [(50829, _LONG, 4, (16, 0, 64, 64), True), (50830, _LONG, 4, (0, 0, 16, 64), True)]  # active, masked
    path = write_dng(tmp_path / "masked.dng", full, meta, extra=extra)
    back, _ = isp.read_raw(path)
    assert back.shape == (48, 64)  # LibRaw leaves the masked rows out of the image
    profile, sources = devices.from_raw(path, "masked")
    assert profile.read_noise == pytest.approx(9.0 / (15520 - 600) ** 2, rel=0.15)
    assert sources["read_noise"] == "estimated: 1024 masked pixels (DNG MaskedAreas)"
    assert profile.shot_noise == devices.DeviceProfile("x").shot_noise and sources["shot_noise"].startswith("default")


def test_without_noise_information_the_defaults_are_kept_and_marked(tmp_path):
    path = tmp_path / "plain.dng"
    isp.write_dng(path, _mosaic(KNOWN), KNOWN)
    profile, sources = devices.from_raw(path, "plain")
    default = devices.DeviceProfile("x")
    assert (profile.shot_noise, profile.read_noise) == (default.shot_noise, default.read_noise)
    assert sources["shot_noise"].startswith("default: ") and sources["read_noise"].startswith("default: ")


def test_the_toml_loads_and_the_device_runs_on_a_photo(tmp_path, photo, capsys):
    path = write_dng(tmp_path / "cam.dng", _mosaic(KNOWN), KNOWN, extra=[(51041, _DOUBLE, 2, NOISE[:2], True)])
    out = tmp_path / "cam.toml"
    assert main(["devices", "from-raw", str(path), "--name", "my-cam", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}: device:my-cam\n"
    (loaded,) = devices.load_profiles(out)
    assert loaded == devices.from_raw(path, "my-cam")[0]  # the TOML keeps every value exactly
    assert "# read: ColorMatrix1 (D65)" in out.read_text()
    shot = parse("device:my-cam").apply([photo])
    assert shot.errors == [None] and shot.images[0].shape == photo.shape
    assert 1.0 < np.abs(shot.images[0].astype(int) - photo).mean() < 40.0  # a capture, still the same scene
    assert not np.array_equal(shot.images[0], parse("device:phone-heif").apply([photo]).images[0])
    assert main(["devices", "from-raw", str(path), "--name", "my-cam", "--out", str(out), "--overwrite",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["profile"]["name"] == "my-cam" and data["sources"]["shot_noise"] == "read: NoiseProfile"


def test_a_dng_of_the_real_frame(raw_dir, tmp_path, photo):
    info = json.loads((raw_dir / "meta.json").read_text())
    for name, pattern in info["files"].items():
        mosaic = isp.read_headerless(raw_dir / name, info["height"], info["width"])
        meta = isp.RawMeta(pattern, (info["black_level"],) * 4, info["white_level"], info["white_balance_gains_rgb"],
                           info["color_matrix_2_xyz_to_camera"])
        path = tmp_path / f"{pattern}.dng"
        isp.write_dng(path, mosaic, meta)
        profile, sources = devices.from_raw(path, f"nikon-{pattern}")
        assert profile.pattern == pattern and profile.black_level == (600.0,) * 4 and profile.white_level == 15520
        np.testing.assert_allclose(profile.wb_gains, info["white_balance_gains_rgb"], rtol=1e-6)
        np.testing.assert_allclose(profile.color_matrix, meta.cam_to_rgb, atol=1e-6)
        assert [k for k in devices.SENSOR_KEYS if not sources[k].startswith("read")] == ["shot_noise", "read_noise"]
    out = tmp_path / "nikon.toml"
    out.write_text(devices.profile_toml(profile, sources))
    devices.load_profiles(out)
    assert parse(f"device:{profile.name}").apply([photo]).errors == [None]


def test_characterize_compares_it_with_the_builtins(samples_dir, models_dir, tmp_path):
    path = tmp_path / "cam.dng"
    isp.write_dng(path, _mosaic(KNOWN), KNOWN)
    toml = tmp_path / "cam.toml"
    assert main(["devices", "from-raw", str(path), "--name", "lab-cam", "--out", str(toml)]) == 0
    rc = main(["characterize", "--experiment", "devices", "--images", str(samples_dir), "--labels",
               str(samples_dir / "labels.csv"), "--model", str(models_dir / "mobilenet_v1_0.5_128_uint8_st.onnx"),
               "--limit", "3", "--profiles", str(toml), "--out", str(tmp_path / "char")])
    assert rc == 0
    rows = json.loads((tmp_path / "char" / "devices.json").read_text())["tables"][0]["rows"]
    assert [r["environment"] for r in rows] == [f"device:{n}" for n in devices.builtin_names()] + ["device:lab-cam"]


def test_bad_input_exits_2_with_one_line(tmp_path, samples_dir, capsys):
    good = tmp_path / "good.dng"
    isp.write_dng(good, _mosaic(KNOWN), KNOWN)
    text = tmp_path / "notes.dng"
    text.write_text("not a raw file\n")
    jpeg = next(samples_dir.glob("*.JPEG"))
    taken = tmp_path / "taken.toml"
    taken.write_text("# mine\n")
    cases = [
        ([str(text), "--name", "x", "--out", str(tmp_path / "a.toml")], "notes.dng: not a recognised raw file"),
        ([str(jpeg), "--name", "x", "--out", str(tmp_path / "a.toml")], "not a recognised raw file"),
        ([str(tmp_path / "gone.dng"), "--name", "x", "--out", str(tmp_path / "a.toml")], "gone.dng does not exist"),
        ([str(good), "--name", "x", "--out", str(taken)], "taken.toml exists; give --overwrite"),
        ([str(good), "--name", "x", "--out", str(tmp_path)], "is a folder, not a file"),
        ([str(good), "--name", "phone-mid", "--out", str(tmp_path / "a.toml")], "phone-mid is a built-in device"),
        ([str(good), "--name", "my cam", "--out", str(tmp_path / "a.toml")], "must be letters, digits"),
    ]
    for argv, message in cases:
        assert main(["devices", "from-raw", *argv]) == 2, argv
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and message in err, err
        assert err.startswith("instab devices: error: ")
    assert taken.read_text() == "# mine\n" and not (tmp_path / "a.toml").exists()
