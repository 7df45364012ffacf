"""Virtual devices, simulate and characterize on real images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from instab import Classifier, models
from instab._shared.decode import decode
from instab.cli.main import main
from instab.environments import devices
from instab.environments.registry import parse


@pytest.fixture(scope="module")
def photos(samples_dir):
    paths = sorted(samples_dir.glob("*.JPEG"))[:3]
    return [decode(str(p)) for p in paths]


@pytest.mark.parametrize("name", devices.builtin_names())
def test_builtin_device_is_deterministic_and_split_invariant(name, photos):
    dev = devices.get(name)
    whole = dev.capture(photos, seed=3)
    tail = dev.capture(photos[1:], seed=3, first_index=1)
    again = dev.capture(photos, seed=3)
    assert whole.errors == [None] * 3 and (whole.sizes > 0).all()
    for a, b in zip(whole.images[1:], tail.images, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b, src in zip(whole.images, again.images, photos, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.shape == src.shape
        # a capture changes the picture, but keeps it recognisable
        assert 1.0 < np.abs(a.astype(int) - src).mean() < 40.0


def test_repeat_shots_differ_only_by_noise(photos):
    env0, env1 = parse("device:phone-budget"), parse("device:phone-budget,shot=1")
    a, b = env0.apply(photos[:1]).images[0], env1.apply(photos[:1]).images[0]
    diff = np.abs(a.astype(int) - b)
    assert 0.5 < diff.mean() < 12.0  # fresh sensor noise, same scene and ISP
    assert str(env1) == "device:phone-budget,shot=1"


def test_devices_differ_from_each_other(photos):
    outs = [devices.get(n).capture(photos[:1]).images[0] for n in devices.builtin_names()]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not np.array_equal(outs[i], outs[j])


def test_raw_capture_develops_through_the_consistent_pipeline(photos):
    from instab import isp

    mosaic, meta = devices.get("phone-mid").capture_raw(photos[0], seed=1)
    assert mosaic.dtype == np.uint16 and mosaic.shape == photos[0].shape[:2]
    rgb = isp.develop(mosaic, meta, "malvar")
    assert rgb.shape == photos[0].shape and isp.psnr(rgb, photos[0]) > 20


def test_toml_profiles(tmp_path, photos, monkeypatch):
    monkeypatch.setattr(devices, "_PROFILES", dict(devices._PROFILES))  # keep the registry clean for other tests
    path = tmp_path / "p.toml"
    path.write_text('[device.lab-cam]\ndemosaic = "bilinear"\nwb_error = [1.1, 1.0, 0.9]\ncodec = "png"\n')
    (prof,) = devices.load_profiles(path)
    assert prof.name == "lab-cam" and prof.wb_error == (1.1, 1.0, 0.9)
    out = parse("device:lab-cam").apply(photos[:1])
    assert out.errors == [None]
    bad = tmp_path / "bad.toml"
    bad.write_text('[device.x]\ndemosaic = "magic"\n')
    with pytest.raises(ValueError, match="demosaic must be one of"):
        devices.load_profiles(bad)
    bad.write_text('[device.x]\ncolour = 1\n')
    with pytest.raises(ValueError, match="unknown key"):
        devices.load_profiles(bad)
    with pytest.raises(ValueError, match="unknown profile"):
        devices.get("nope")


def test_simulate_command_writes_images_and_manifest(samples_dir, tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["simulate", "--images", str(samples_dir), "--labels", str(samples_dir / "labels.csv"),
               "--env", "jpeg:q=85", "--env", "webp:q=80", "--limit", "6", "--out", str(out)])
    assert rc == 0, capsys.readouterr()
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(rows) == 12 and {r["environment"] for r in rows} == {"jpeg:q=85", "webp:q=80"}
    assert all((out / r["path"]).is_file() for r in rows)
    rc = main(["simulate", "--images", str(samples_dir), "--labels", str(samples_dir / "labels.csv"),
               "--device", "phone-mid", "--repeats", "2", "--limit", "2", "--out", str(tmp_path / "dev")])
    assert rc == 0
    rows = list(csv.DictReader((tmp_path / "dev" / "manifest.csv").open()))
    assert sorted(r["repeat"] for r in rows) == ["0", "0", "1", "1"]


def test_characterize_devices(samples_dir, models_dir, tmp_path, capsys):
    model = str(models_dir / "mobilenet_v1_0.5_128_uint8_st.onnx")
    rc = main(["characterize", "--experiment", "devices", "--images", str(samples_dir), "--labels",
               str(samples_dir / "labels.csv"), "--model", model, "--limit", "8", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "devices.json").read_text())["tables"]
    envs = [f"device:{n}" for n in devices.builtin_names()]
    assert [r["environment"] for r in data[0]["rows"]] == envs
    # The same rates from the pieces: decode, each device (seed 0), the classifier, counted here.
    rows = list(csv.DictReader((samples_dir / "labels.csv").open()))[:8]
    labels = np.array([int(r["class_index"]) for r in rows])
    images = [decode(str(samples_dir / r["file"])) for r in rows]
    clf = Classifier(models.load(model))
    ranked = np.stack([clf.predict(parse(e).apply(images, seed=0).images, k=5).classes for e in envs], axis=1)
    for k, key in ((1, "instability"), (3, "instability_top3"), (5, "instability_top5")):
        right = (ranked[:, :, :k] == labels[:, None, None]).any(axis=2)
        unstable = right.any(axis=1) & ~right.all(axis=1)
        assert data[0][key] == pytest.approx(unstable.mean()), key
    assert [r["accuracy"] for r in data[0]["rows"]] == pytest.approx(
        (ranked[:, :, 0] == labels[:, None]).mean(axis=0).tolist())
    # the top-k experiment reports the same environments with the three k side by side
    assert main(["characterize", "--experiment", "top-k", "--images", str(samples_dir), "--labels",
                 str(samples_dir / "labels.csv"), "--model", model, "--limit", "4", "--out", str(tmp_path)]) == 0
    assert "top-3" in capsys.readouterr().out
