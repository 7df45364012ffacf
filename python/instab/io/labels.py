"""Labelled image sets: the labels CSV (``file``, ``class_index``) and label fields.

Labels CSV: columns ``file`` and ``class_index`` (other columns allowed);
``class_index`` may hold ';'-separated alternative correct classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from instab._shared.decode import RAW_SUFFIXES
from instab.io.csvfile import read_csv

# Encoded images and the camera raw files instab.isp.decode develops.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".avif", ".bmp", ".tif", ".tiff", *RAW_SUFFIXES}


@dataclass(frozen=True)
class LabeledImage:
    """One image file and its correct classes (alternatives, any of which counts as right)."""

    path: Path
    labels: tuple[int, ...]


def parse_label_field(
    text: str, class_names: Sequence[str] | None = None, n_classes: int | None = None
) -> tuple[int, ...]:
    """Parse '3', '3;7' or 'beer_bottle;wine_bottle' into class indices."""
    out: list[int] = []
    index = {name.lower(): i for i, name in enumerate(class_names)} if class_names else None
    for token in str(text).split(";"):
        token = token.strip()
        if not token:
            continue
        if token.lstrip("-").isdigit():
            value = int(token)
        elif index is not None and token.lower().replace(" ", "_") in index:
            value = index[token.lower().replace(" ", "_")]
        elif index is not None and token.lower() in index:
            value = index[token.lower()]
        else:
            hint = "" if index is not None else " (class names need a class-name list)"
            raise ValueError(f"unknown class {token!r}{hint}")
        limit = n_classes if n_classes is not None else (len(class_names) if class_names else None)
        if value < 0 or (limit is not None and value >= limit):
            raise ValueError(f"class index {value} out of range" + (f" (0..{limit - 1})" if limit else ""))
        out.append(value)
    if not out:
        raise ValueError("empty label set")
    return tuple(dict.fromkeys(out))


def read_labels_csv(
    path: str | os.PathLike[str], images_dir: str | os.PathLike[str] | None = None, limit: int | None = None
) -> tuple[list[LabeledImage], list[str]]:
    """Read a labels CSV (file, class_index); returns (images, per-row errors).

    ``limit`` keeps the first N usable rows, in the CSV's order. A UTF-8 BOM is
    accepted; a row that is not UTF-8 is rejected on its own, with its line.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit: expected a positive number of images, got {limit!r}")
    path = Path(path)
    header, rows = read_csv(path, "labels")
    missing = {"file", "class_index"} - set(header)
    if missing:
        raise ValueError(f"labels: {path} lacks column(s) {sorted(missing)} (has {header})")
    base = Path(images_dir) if images_dir is not None else path.parent
    images: list[LabeledImage] = []
    errors: list[str] = []
    for row in rows:
        where = f"{path.name}:{row.line}"
        if row.fields is None:
            errors.append(f"{where}: {row.error}")
            continue
        try:
            labels = parse_label_field(row.fields["class_index"] or "")
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        file = base / (row.fields["file"] or "")
        if not row.fields["file"] or not file.is_file():
            errors.append(f"{where}: file {row.fields['file']!r} not found in {base}")
            continue
        images.append(LabeledImage(file, labels))
        if limit is not None and len(images) == limit:
            break
    return images, errors


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files directly in ``folder`` (by suffix, see :data:`IMAGE_SUFFIXES`), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"images: {folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


__all__ = [
    "IMAGE_SUFFIXES",
    "LabeledImage",
    "list_images",
    "parse_label_field",
    "read_labels_csv",
]
