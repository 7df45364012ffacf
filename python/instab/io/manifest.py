"""Manifests (CSV): one row per (image, environment, repeat), with per-row validation.

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

from instab.io.csvfile import parse_int64, read_csv
from instab.io.labels import parse_label_field

MANIFEST_COLUMNS = ("image_id", "environment", "path", "labels", "repeat", "group")


@dataclass(frozen=True)
class ManifestRow:
    """One valid manifest row (``path`` resolved against the manifest's folder)."""

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
        """Counts of valid rows, images and environments, then the first rejected rows."""
        envs = sorted({r.environment for r in self.rows})
        images = {r.image_id for r in self.rows}
        text = (f"{len(self.rows)} valid rows ({len(images)} images x {len(envs)} environments), "
                f"{len(self.errors)} rejected")
        if self.errors:
            shown = "\n  ".join(self.errors[:10])
            more = f"\n  ... and {len(self.errors) - 10} more" if len(self.errors) > 10 else ""
            text += f":\n  {shown}{more}"
        return text


def read_manifest(path: str | Path, class_names: Sequence[str] | None = None, n_classes: int | None = None) -> Manifest:
    """Read and validate a manifest CSV; bad rows are recorded with their line number, not raised.

    A UTF-8 BOM is accepted; a row that is not UTF-8, has an oversized field or
    a repeat/group outside SQLite's 64-bit integers is rejected on its own.
    """
    path = Path(path)
    header, rows = read_csv(path, "manifest")
    missing = {"image_id", "environment", "path", "labels"} - set(header)
    if missing:
        raise ValueError(f"manifest: {path} lacks column(s) {sorted(missing)} (has {header})")
    manifest = Manifest(path)
    seen: set[tuple[str, str, int]] = set()
    for csv_row in rows:
        try:
            if csv_row.fields is None:
                raise ValueError(csv_row.error)
            row = _manifest_row(path, csv_row.line, csv_row.fields, class_names, n_classes)
            key = (row.image_id, row.environment, row.repeat)
            if key in seen:
                raise ValueError(f"duplicate row for image {row.image_id!r}, environment {row.environment!r}, "
                                 f"repeat {row.repeat}")
            seen.add(key)
        except ValueError as exc:
            manifest.errors.append(f"{path.name}:{csv_row.line}: {exc}")
            continue
        manifest.rows.append(row)
    return manifest


def _manifest_row(path: Path, line: int, row: dict[str, str | None], class_names: Sequence[str] | None,
                  n_classes: int | None) -> ManifestRow:
    image_id = (row["image_id"] or "").strip()
    env = (row["environment"] or "").strip()
    if not image_id or not env:
        raise ValueError("image_id and environment must not be empty")
    labels = parse_label_field(row["labels"] or "", class_names, n_classes)
    repeat = parse_int64((row.get("repeat") or "").strip() or "0", "repeat")
    group_text = (row.get("group") or "").strip()
    group = parse_int64(group_text, "group") if group_text else None
    file = Path(row["path"] or "")
    if not file.is_absolute():
        file = path.parent / file
    if not file.is_file():
        raise ValueError(f"file {row['path']!r} not found")
    return ManifestRow(line, image_id, env, file, labels, repeat, group)


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


__all__ = [
    "MANIFEST_COLUMNS",
    "Manifest",
    "ManifestRow",
    "read_manifest",
    "write_manifest",
]
