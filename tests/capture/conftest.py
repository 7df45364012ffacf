"""A small capture session over three real photos, and phone photos of its display frames."""

from __future__ import annotations

import shutil

import pytest

from instab._shared.decode import decode
from instab.capture import render_display
from instab.capture.state import SessionState
from instab.io.labels import read_labels_csv
from tests._support.phone import jpeg, photograph, pose_homography

FILES = {"n01440764_tench.JPEG": 0, "n01484850_great_white_shark.JPEG": 2, "n01491361_tiger_shark.JPEG": 3}
PHOTO = (1600, 1200)


@pytest.fixture
def images(samples_dir, tmp_path):
    """A folder with three ImageNet samples and their labels.csv, in display order."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in FILES:
        shutil.copy(samples_dir / name, folder / name)
    (folder / "labels.csv").write_text("file,class_index\n" + "".join(f"{n},{c}\n" for n, c in FILES.items()))
    return folder


@pytest.fixture
def state(images, tmp_path):
    items, errors = read_labels_csv(images / "labels.csv")
    assert not errors
    session = SessionState.create(tmp_path / "out", items, repeats=2, size=(1920, 1080))
    yield session
    session.close()


@pytest.fixture
def shoot(images, samples_dir):
    """``shoot(image_id, **pose)``: JPEG bytes of a phone photo of that image's display frame."""
    names = list(FILES)
    background = decode(samples_dir / "n01494475_hammerhead.JPEG")

    def make(image_id, *, frame_of=None, yaw=15.0, blur=0.8, quality=90, **kw):
        shown = decode(images / names[image_id if frame_of is None else frame_of])
        frame = render_display(shown, image_id)
        h = pose_homography((1920, 1080), PHOTO, yaw=yaw, pitch=6, roll=3, fill=0.85)
        return jpeg(photograph(frame, h, PHOTO, blur=blur, noise=2, background=background, **kw), quality)

    return make
