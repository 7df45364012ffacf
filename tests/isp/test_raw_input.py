"""Real camera raw files as input everywhere (issue 15, item 1).

A real DNG is made from the shared 14-bit Nikon frame (its levels, pattern and
matrix from meta.json); small DNGs are made by unprocessing shared photos.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instab import environments, isp
from instab._shared.decode import decode as decode_pixels
from instab.cli.main import main
from instab.environments.isp_kinds import libraw_settings
from instab.io.labels import list_images


def _real_dng(raw_dir: Path, out: Path) -> Path:
    meta_j = json.loads((raw_dir / "meta.json").read_text())
    mosaic = isp.read_headerless(raw_dir / "DSC_1339_768x512_rggb.raw", meta_j["height"], meta_j["width"])
    meta = isp.RawMeta(
        pattern="rggb", black_level=meta_j["black_level"], white_level=meta_j["white_level"],
        wb_gains=meta_j["white_balance_gains_rgb"],
        xyz_to_cam=tuple(tuple(r) for r in meta_j["color_matrix_2_xyz_to_camera"]),
    )
    isp.write_dng(out, mosaic, meta)
    return out


@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory: pytest.TempPathFactory, raw_dir: Path, samples_dir: Path) -> Path:
    """A labelled folder: the real frame as a DNG, two unprocessed photos as DNGs and one JPEG."""
    folder = tmp_path_factory.mktemp("raw")
    _real_dng(raw_dir, folder / "rose.dng")
    rows = [("rose.dng", "985")]
    with (samples_dir / "labels.csv").open(newline="") as fh:
        labelled = list(csv.DictReader(fh))[:3]
    for i, row in enumerate(labelled):
        image = np.asarray(Image.open(samples_dir / row["file"]).convert("RGB").resize((96, 64)))
        if i < 2:
            mosaic, meta = isp.unprocess(image, seed=i, tone="none")
            isp.write_dng(folder / f"photo{i}.DNG", mosaic, meta)  # the suffix in any case
            rows.append((f"photo{i}.DNG", row["class_index"]))
        else:
            Image.fromarray(image).save(folder / "photo.jpg", quality=95)
            rows.append(("photo.jpg", row["class_index"]))
    with (folder / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "class_index"])
        w.writerows(rows)
    return folder


def test_decode_develops_a_dng_with_the_documented_defaults(raw_folder: Path) -> None:
    path = raw_folder / "rose.dng"
    kept = isp.decode(path, raw="keep")
    assert isinstance(kept, isp.RawImage) and kept.path == str(path)
    expected = isp.develop(kept.mosaic, kept.meta, "malvar", wb="camera", gamma="srgb", tone="none")
    out = isp.decode(path)
    assert out.dtype == np.uint8 and out.shape == (512, 768, 3)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(isp.develop_default(kept.mosaic, kept.meta), expected)
    assert isp.decode(kept) is kept.developed  # developed once


def test_the_pixel_decoder_refuses_raw_files_with_a_pointer(raw_folder: Path) -> None:
    with pytest.raises(OSError, match=r"camera raw file; read it with instab\.isp\.decode"):
        decode_pixels(raw_folder / "rose.dng")
    assert isp.decode(raw_folder / "photo.jpg").shape == (64, 96, 3)  # other files go through as before


def test_unreadable_raw_files_raise_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.nef"
    bad.write_bytes(b"not a raw file at all")
    with pytest.raises(OSError, match="broken.nef: not a recognised raw file"):
        isp.decode(bad)
    with pytest.raises(OSError, match="does not exist"):
        isp.decode(tmp_path / "missing.dng")
    with pytest.raises(ValueError, match="raw: expected one of"):
        isp.decode(bad, raw="nope")


def test_libraw_kind_on_a_dng_is_rawpy_on_the_file(raw_folder: Path) -> None:
    rawpy = pytest.importorskip("rawpy")
    path = raw_folder / "rose.dng"
    raw = isp.read_raw_image(path)
    out = environments.parse("isp:libraw-ahd").apply([raw])
    with rawpy.imread(str(path)) as r:
        expected = r.postprocess(**libraw_settings("ahd"))
    assert out.errors == [None]
    np.testing.assert_array_equal(out.images[0], expected)


def test_instab_kind_develops_the_real_mosaic_without_unprocessing(raw_folder: Path) -> None:
    raw = isp.read_raw_image(raw_folder / "rose.dng")
    out = environments.parse("isp:instab-ha,shot=0.01").apply([raw])  # noise settings do not apply
    np.testing.assert_array_equal(out.images[0], isp.develop(raw.mosaic, raw.meta, "ha", tone="none"))


def test_mixed_lists_and_device_kinds(raw_folder: Path) -> None:
    raw = isp.read_raw_image(raw_folder / "photo0.DNG")
    rgb = isp.decode(raw_folder / "photo.jpg")
    env = environments.parse("isp:instab-malvar")
    mixed = env.apply([raw, rgb, None], seed=3)
    assert mixed.errors[:2] == [None, None] and mixed.errors[2] == "no input image"
    np.testing.assert_array_equal(mixed.images[1], env.apply([rgb], seed=3).images[0])
    device = environments.parse("device:phone-mid")
    assert device.accepts_raw and environments.parse("isp:libraw-ahd+jpeg:q=80").accepts_raw
    assert not environments.parse("jpeg:q=80").accepts_raw
    out = device.apply([raw, rgb])
    assert out.errors == [None, None] and out.images[0].shape == (64, 96, 3)
    # The device's ISP on the real mosaic, no unprocessing or noise: the same twice, any seed.
    np.testing.assert_array_equal(out.images[0], device.apply([raw], seed=9).images[0])


def test_folders_list_raw_files(raw_folder: Path) -> None:
    names = [p.name for p in list_images(raw_folder)]
    assert names == ["photo.jpg", "photo0.DNG", "photo1.DNG", "rose.dng"]


def test_simulate_accepts_a_folder_with_dngs(raw_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim"
    code = main(["simulate", "--images", str(raw_folder), "--labels", str(raw_folder / "labels.csv"),
                 "--env", "jpeg:q=80", "--env", "isp:libraw-ahd", "--device", "phone-mid", "--out", str(out),
                 "--quiet"])
    assert code == 0
    with (out / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12  # 4 images x 3 environments


def test_characterize_isp_on_real_raw_files(raw_folder: Path, models_dir: Path, tmp_path: Path) -> None:
    model = str(models_dir / "mobilenet_v1_0.5_128_uint8_st.onnx")
    code = main(["characterize", "--experiment", "isp", "--images", str(raw_folder),
                 "--labels", str(raw_folder / "labels.csv"), "--model", model, "--out", str(tmp_path), "--quiet"])
    assert code == 0
    table = json.loads((tmp_path / "isp.json").read_text())["isp"]
    assert table["n_images"] == 4 and not any(table["errors"])


def test_score_accepts_a_manifest_mixing_raw_and_rgb_files(raw_folder: Path, models_dir: Path,
                                                            tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    bad = tmp_path / "broken.dng"
    bad.write_bytes(b"II*\x00 not really a DNG")
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "environment", "path", "labels"])
        for name in ("rose.dng", "photo0.DNG", "photo.jpg"):
            w.writerow([name, "original", str(raw_folder / name), "1"])
        w.writerow(["broken", "original", str(bad), "1"])
    model = str(models_dir / "mobilenet_v1_0.5_128_uint8_st.onnx")
    code = main(["score", str(manifest), "--model", model, "--out", str(tmp_path / "r.sqlite"), "--quiet",
                 "--json"])
    assert code == 1  # one item failed; the other three are stored
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        rows = dict(db.execute("SELECT image_id, error FROM results").fetchall())
    assert set(rows) == {"rose.dng", "photo0.DNG", "photo.jpg", "broken"}
    assert rows["rose.dng"] is None and rows["photo0.DNG"] is None and rows["photo.jpg"] is None
    assert "broken.dng: LibRaw cannot decode" in rows["broken"]
