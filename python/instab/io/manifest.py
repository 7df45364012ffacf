"""Labelled image sets and manifests (CSV), with per-row validation.

Labels CSV: columns ``file`` and ``class_index`` (other columns allowed);
``class_index`` may hold ';'-separated alternative correct classes.

Manifest CSV: ``image_id, environment, path, labels`` and optional ``repeat``
and ``group``. ``labels`` holds class indices or class names, ';' separating
alternatives. Paths are relative to the manifest's folder unless absolute.
This is also the format for real multi-device photo sets: one row per photo,
``environment`` naming the device.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_COLUMNS = ("image_id", "environment", "path", "labels", "repeat", "group")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".avif", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class LabeledImage:
    path: Path
    labels: tuple[int, ...]


@dataclass(frozen=True)
class ManifestRow:
    line: int  # 1-based line in the CSV (header = line 1)
    image_id: str
    environment: str
    path: Path
    labels: tuple[int, ...]
    repeat: int = 0
    group: int | None = None


@dataclass
class Manifest:
    """Valid rows plus one message per rejected row."""

    path: Path
    rows: list[ManifestRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        envs = sorted({r.environment for r in self.rows})
        images = {r.image_id for r in self.rows}
        text = f"{len(self.rows)} valid rows ({len(images)} images x {len(envs)} environments), {len(self.errors)} rejected"
        if self.errors:
            shown = "\n  ".join(self.errors[:10])
            more = f"\n  ... and {len(self.errors) - 10} more" if len(self.errors) > 10 else ""
            text += f":\n  {shown}{more}"
        return text


def parse_label_field(text: str, class_names: Sequence[str] | None = None, n_classes: int | None = None) -> tuple[int, ...]:
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
    path: str | Path, images_dir: str | Path | None = None, limit: int | None = None
) -> tuple[list[LabeledImage], list[str]]:
    """Read a labels CSV (file, class_index); returns (images, per-row errors).

    ``limit`` keeps the first N usable rows, in the CSV's order.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit: expected a positive number of images, got {limit!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels: {path} does not exist")
    base = Path(images_dir) if images_dir is not None else path.parent
    images: list[LabeledImage] = []
    errors: list[str] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "class_index"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"labels: {path} lacks column(s) {sorted(missing)} (has {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            try:
                labels = parse_label_field(row["class_index"])
            except ValueError as exc:
                errors.append(f"{path.name}:{line}: {exc}")
                continue
            file = base / row["file"]
            if not file.is_file():
                errors.append(f"{path.name}:{line}: file {row['file']!r} not found in {base}")
                continue
            images.append(LabeledImage(file, labels))
            if limit is not None and len(images) == limit:
                break
    return images, errors


def read_manifest(path: str | Path, class_names: Sequence[str] | None = None, n_classes: int | None = None) -> Manifest:
    """Read and validate a manifest CSV; bad rows are recorded, not raised."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest: {path} does not exist")
    manifest = Manifest(path)
    seen: set[tuple[str, str, int]] = set()
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"image_id", "environment", "path", "labels"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"manifest: {path} lacks column(s) {sorted(missing)} (has {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            where = f"{path.name}:{line}"
            try:
                image_id = (row["image_id"] or "").strip()
                env = (row["environment"] or "").strip()
                if not image_id or not env:
                    raise ValueError("image_id and environment must not be empty")
                labels = parse_label_field(row["labels"] or "", class_names, n_classes)
                repeat = int(row.get("repeat") or 0)
                group_text = (row.get("group") or "").strip()
                group = int(group_text) if group_text else None
                file = Path(row["path"] or "")
                if not file.is_absolute():
                    file = path.parent / file
                if not file.is_file():
                    raise ValueError(f"file {row['path']!r} not found")
                key = (image_id, env, repeat)
                if key in seen:
                    raise ValueError(f"duplicate row for image {image_id!r}, environment {env!r}, repeat {repeat}")
                seen.add(key)
            except ValueError as exc:
                manifest.errors.append(f"{where}: {exc}")
                continue
            manifest.rows.append(ManifestRow(line, image_id, env, file, labels, repeat, group))
    return manifest


def write_manifest(path: str | Path, rows: Sequence[ManifestRow]) -> None:
    """Write rows as a manifest CSV with paths relative to its folder where possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_COLUMNS)
        for r in rows:
            try:
                rel = Path(r.path).resolve().relative_to(path.parent.resolve())
            except ValueError:
                rel = Path(r.path).resolve()
            w.writerow([r.image_id, r.environment, rel.as_posix(), ";".join(map(str, r.labels)), r.repeat,
                        "" if r.group is None else r.group])


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"images: {folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

__all__ = [
    "IMAGE_SUFFIXES",
    "LabeledImage",
    "MANIFEST_COLUMNS",
    "Manifest",
    "ManifestRow",
    "list_images",
    "parse_label_field",
    "read_labels_csv",
    "read_manifest",
    "write_manifest",
]
