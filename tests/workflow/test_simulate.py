"""``simulate``: labelled images -> environment outputs as PNG files + a manifest, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from instab.io.labels import read_labels_csv
from instab.io.manifest import read_manifest
from instab.workflow.simulate import simulate, slug

COLOURS = {"a": (10, 100, 250), "b": (100, 150, 200)}


@pytest.fixture
def items(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, colour in COLOURS.items():
        Image.fromarray(np.full((24, 32, 3), colour, np.uint8)).save(folder / f"{name}.png")
    (folder / "c.png").write_bytes(b"not a png")  # listed, exists, cannot be decoded
    (folder / "labels.csv").write_text("file,class_index\na.png,3\nb.png,5;6\nc.png,1\n")
    images, errors = read_labels_csv(folder / "labels.csv")
    assert errors == []
    return images


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_files_and_manifest_rows_exactly(items, tmp_path):
    out = tmp_path / "sim"
    summary = simulate(items, ["png", "brightness:delta=0.2"], out, repeats=2)
    assert summary.manifest == out / "manifest.csv"
    assert summary.written == 8  # 2 readable images x 2 environments x 2 repeats
    assert len(summary.errors) == 1 and summary.errors[0].startswith("c.png: cannot read (")
    manifest = read_manifest(out / "manifest.csv")
    assert manifest.errors == []
    bright = slug("brightness:delta=0.2")
    assert bright == "brightness_delta=0.2"
    expected = [(name, env, folder, r) for env, folder in (("png", "png"), ("brightness:delta=0.2", bright))
                for r in (0, 1) for name in ("a", "b")]
    got = [(r.image_id, r.environment, r.path.parent.name, r.repeat) for r in manifest.rows]
    assert got == [(f"{name}.png", env, folder, r) for name, env, folder, r in expected]
    assert [r.path.name for r in manifest.rows[:2]] == ["a_r0.png", "b_r0.png"]
    assert [r.labels for r in manifest.rows[:2]] == [(3,), (5, 6)]
    assert all(r.group is None for r in manifest.rows)
    for row in manifest.rows:
        colour = np.array(COLOURS[row.image_id[0]])
        if row.environment == "png":
            want = colour  # lossless
        else:
            want = np.minimum(colour + 51, 255)  # x + 0.2 * 255, clipped: (61, 151, 255) and (151, 201, 251)
        np.testing.assert_array_equal(_pixels(row.path), np.broadcast_to(want, (24, 32, 3)))
    assert "wrote 8 images" in summary.text() and "1 items failed:" in summary.text()


def test_one_repeat_has_no_suffix_and_chunking_changes_nothing(items, tmp_path):
    one = simulate(items, ["png"], tmp_path / "one", chunk=1)
    big = simulate(items, ["png"], tmp_path / "big", chunk=100)
    rows_one = read_manifest(one.manifest).rows
    assert [r.path.name for r in rows_one] == ["a.png", "b.png"]
    rows_big = read_manifest(big.manifest).rows
    assert [(r.image_id, r.repeat) for r in rows_one] == [(r.image_id, r.repeat) for r in rows_big]
    assert one.errors == big.errors and one.written == big.written == 2


def test_device_repeats_are_fresh_shots_and_reproducible(items, tmp_path):
    first = simulate(items[:1], ["device:phone-mid"], tmp_path / "d1", repeats=2, seed=3)
    again = simulate(items[:1], ["device:phone-mid"], tmp_path / "d2", repeats=2, seed=3)
    rows = read_manifest(first.manifest).rows
    assert [(r.environment, r.repeat) for r in rows] == [("device:phone-mid", 0), ("device:phone-mid", 1)]
    shot0, shot1 = (_pixels(r.path) for r in rows)
    assert not np.array_equal(shot0, shot1)  # a fresh sensor-noise draw per shot
    for a, b in zip(rows, read_manifest(again.manifest).rows, strict=True):
        np.testing.assert_array_equal(_pixels(a.path), _pixels(b.path))


def test_bad_arguments(items, tmp_path):
    with pytest.raises(ValueError, match="repeats: must be >= 1"):
        simulate(items, ["png"], tmp_path, repeats=0)
    with pytest.raises(ValueError, match="give at least one environment"):
        simulate(items, [], tmp_path)
    with pytest.raises(ValueError, match="unknown kind"):
        simulate(items, ["jpg:q=5"], tmp_path)
