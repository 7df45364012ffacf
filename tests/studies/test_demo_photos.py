"""The demo's photos: found by name, and one clear line naming the extra where their package is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

import instab.studies.demo as D


def test_photo_path_by_name_and_by_photo() -> None:
    assert D.photo_path("chelsea") == D.photo_path(D.PHOTOS[0])
    for photo in D.PHOTOS:
        assert D.photo_path(photo).is_file(), photo
    with pytest.raises(ValueError, match="no demo photo 'cat'; expected one of chelsea, coffee"):
        D.photo_path("cat")


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def absent(package: str) -> None:
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(D, "files", absent)  # as on an install without instab[demo]
    with pytest.raises(ModuleNotFoundError) as info:
        D.photo_path("coffee")
    assert str(info.value) == "the demo's photos need scikit-image: pip install 'instab[demo]'"
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'instab\[demo\]'"):
        D.write_photo_set(tmp_path)  # the demo's first step fails with the same line
