"""A manifest of shared sample photos under several environment names (every photo in every column)."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Sequence
from pathlib import Path


def sample_manifest(samples_dir: Path, folder: Path, n_images: int, envs: Sequence[str]) -> tuple[Path, list[dict]]:
    """Write ``folder/manifest.csv`` for the first ``n_images`` rows of the samples' labels CSV x ``envs``;
    return its path and the label rows used."""
    with (samples_dir / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:n_images]
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "environment", "path", "labels"])
        for r, env in itertools.product(rows, envs):
            w.writerow([r["file"], env, samples_dir / r["file"], r["class_index"]])
    return manifest, rows
