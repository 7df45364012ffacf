"""``simulate`` with a device: one image too small for the sensor mosaic is an error line, the rest are written.

Regression: ``device:NAME`` raised for the whole batch on a 1x1 image, so nothing was written.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from instab.io.labels import read_labels_csv
from instab.io.manifest import read_manifest
from instab.workflow.simulate import simulate


def test_a_tiny_image_does_not_stop_a_device_run(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((24, 32, 3), (10, 100, 250), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.full((1, 1, 3), 128, np.uint8)).save(folder / "tiny.png")
    Image.fromarray(np.full((16, 16, 3), (200, 50, 20), np.uint8)).save(folder / "b.png")
    (folder / "labels.csv").write_text("file,class_index\na.png,1\ntiny.png,2\nb.png,3\n")
    items, errors = read_labels_csv(folder / "labels.csv")
    assert errors == []
    summary = simulate(items, ["device:phone-mid", "device:phone-heif+png"], tmp_path / "sim", repeats=2)
    assert summary.written == 8  # 2 usable images x 2 environments x 2 shots
    assert len(summary.errors) == 4 and all(e.startswith("tiny.png [device:") for e in summary.errors)
    assert all("too small" in e for e in summary.errors)
    rows = read_manifest(tmp_path / "sim" / "manifest.csv").rows
    assert sorted({r.image_id for r in rows}) == ["a.png", "b.png"]
