"""ISP experiments: how much software ISPs alone change a classifier's answers, and the raw mitigation.

- :func:`isp_table` (the shape of the source study's Table 4): labelled sRGB
  images -> unprocess (one seeded simulated capture per image, the same for
  every ISP) -> develop by each ISP -> classify -> accuracy per ISP and the
  instability across ISPs.
- :func:`raw_mitigation`: two simulated devices, each with its own capture
  (noise, Bayer layout), ISP and codec, against the same two raw captures
  developed through instab's one pipeline; the instability of each pair.
- :func:`raw_frame_psnr`: the shared real raw frame developed by instab and by
  LibRaw through a DNG written by :func:`instab.isp.write_dng`.

- :func:`round_trip_psnr`: unprocess -> develop PSNR on photographs, per demosaic.

``instab characterize --experiment isp`` runs the first two (:func:`isp_experiment`),
``--experiment isp-psnr`` the last two (:func:`psnr_experiment`).
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from instab import environments, isp
from instab import models as _models
from instab._shared.decode import decode
from instab._shared.progress import Progress, report
from instab._shared.validation import check_threads
from instab.environments.isp_kinds import IspEnvironment, develop_libraw
from instab.inference.classifier import Classifier
from instab.io.labels import read_labels_csv
from instab.isp import rawfile
from instab.metrics.instability import instability
from instab.metrics.labels import normalize_label_sets
from instab.studies.result import to_plain

# The Table-4 ISPs: LibRaw's demosaics with camera white balance and the sRGB
# curve, two LibRaw option changes, and instab's pipeline with each demosaic.
DEFAULT_ISPS: tuple[str, ...] = (
    "isp:libraw-linear",
    "isp:libraw-vng",
    "isp:libraw-ppg",
    "isp:libraw-ahd",
    "isp:libraw-dcb",
    "isp:libraw-dht",
    "isp:libraw-aahd",
    "isp:libraw-ahd,awb",
    "isp:libraw-ahd,gamma=bt709",
    "isp:instab-bilinear",
    "isp:instab-malvar",
    "isp:instab-ha",
)

# Moderate sensor noise (variances for a signal in [0, 1]; Brooks et al. sample
# shot noise over about 1e-4 .. 1e-2 and read noise over 1e-8 .. 1e-4).
SHOT_NOISE = 1e-3
READ_NOISE = 1e-6


@dataclass
class IspTable:
    """Accuracy per ISP (top-1, top-5) and instability across all of them."""

    isps: list[str]
    n_images: int
    original_top1: float  # the unprocessed sRGB images, for reference (not part of the instability)
    original_top5: float
    top1: list[float]
    top5: list[float]
    errors: list[int]  # images an ISP failed on
    instability_top1: float
    instability_top5: float
    instability_libraw_top1: float  # among the LibRaw ISPs only
    instability_instab_top1: float  # among instab's demosaics only
    seconds: float

    def markdown(self) -> str:
        lines = ["| ISP | top-1 | top-5 | failed |", "|---|---|---|---|"]
        lines.append(f"| (original sRGB, no ISP) | {self.original_top1:.3f} | {self.original_top5:.3f} | - |")
        for name, a1, a5, e in zip(self.isps, self.top1, self.top5, self.errors, strict=True):
            lines.append(f"| `{name}` | {a1:.3f} | {a5:.3f} | {e} |")
        lines.append(
            f"\nInstability across all {len(self.isps)} ISPs ({self.n_images} images): "
            f"top-1 {self.instability_top1:.3f}, top-5 {self.instability_top5:.3f}; "
            f"LibRaw ISPs only top-1 {self.instability_libraw_top1:.3f}; "
            f"instab demosaics only top-1 {self.instability_instab_top1:.3f}."
        )
        return "\n".join(lines)

    def to_text(self) -> str:
        """The markdown table (:meth:`markdown`)."""
        return self.markdown()

    def to_dict(self) -> dict[str, Any]:
        """Every field; NaN rates (fewer than two ISPs of a kind) as None."""
        return to_plain(self)


@dataclass
class RawMitigationResult:
    """Instability between two simulated devices, as shipped vs developed through one pipeline."""

    devices: list[str]
    consistent: str
    n_images: int
    device_top1: list[float]
    consistent_top1: list[float]
    instability_devices_top1: float
    instability_consistent_top1: float
    instability_devices_top5: float
    instability_consistent_top5: float

    def markdown(self) -> str:
        return "\n".join([
            "| setting | device A top-1 | device B top-1 | instability top-1 | instability top-5 |",
            "|---|---|---|---|---|",
            f"| own ISP + codec | {self.device_top1[0]:.3f} | {self.device_top1[1]:.3f} | "
            f"{self.instability_devices_top1:.3f} | {self.instability_devices_top5:.3f} |",
            f"| same raw, one pipeline (`{self.consistent}`) | {self.consistent_top1[0]:.3f} | "
            f"{self.consistent_top1[1]:.3f} | {self.instability_consistent_top1:.3f} | "
            f"{self.instability_consistent_top5:.3f} |",
            f"\nDevice A: {self.devices[0]}; device B: {self.devices[1]} ({self.n_images} images).",
        ])

    def to_text(self) -> str:
        """The markdown table (:meth:`markdown`)."""
        return self.markdown()

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON types only."""
        return to_plain(self)


@dataclass
class IspStudy:
    """``instab characterize --experiment isp``: the ISP table and the raw mitigation on the same images."""

    isp: IspTable
    raw_mitigation: RawMitigationResult
    input_errors: list[str] = field(default_factory=list)  # label rows and images left out, ISP failures

    def to_text(self) -> str:
        """Both tables, the raw mitigation under its own heading."""
        return self.isp.markdown() + "\n\nRaw mitigation:\n" + self.raw_mitigation.markdown()

    def to_dict(self) -> dict[str, Any]:
        """``{"isp": ..., "raw_mitigation": ...}``."""
        return {"isp": self.isp.to_dict(), "raw_mitigation": self.raw_mitigation.to_dict()}


@dataclass
class PsnrStudy:
    """``instab characterize --experiment isp-psnr``: round-trip PSNR and the real raw frame vs LibRaw.

    ``round_trip``: {blur radius as text: :func:`round_trip_psnr`'s dict}, empty without images;
    ``raw_frame``: :func:`raw_frame_psnr`'s rows, empty without a raw folder.
    """

    n_images: int
    round_trip: dict[str, dict[str, dict[str, float]]]
    raw_frame: list[dict[str, Any]]
    input_errors: list[str] = field(default_factory=list)  # images that could not be read

    def to_text(self) -> str:
        """A table per part: PSNR per demosaic and blur, then per raw file and method pair."""
        parts = []
        if self.round_trip:
            lines = [f"Round trip unprocess -> develop, {self.n_images} images (dB):",
                     "| blur | demosaic | median | min | share >= 30 dB |", "|---|---|---|---|---|"]
            for blur, per in self.round_trip.items():
                lines += [f"| {blur} | {d} | {v['median']:.2f} | {v['min']:.2f} | {v['share_30dB']:.3f} |"
                          for d, v in per.items()]
            parts.append("\n".join(lines))
        if self.raw_frame:
            pairs = [k for k in self.raw_frame[0] if k not in ("file", "pattern")]
            lines = ["The raw frame, instab vs LibRaw (dB):", "| file | pattern | " + " | ".join(pairs) + " |",
                     "|---|---|" + "---|" * len(pairs)]
            lines += [f"| {r['file']} | {r['pattern']} | " + " | ".join(f"{r[p]:.2f}" for p in pairs) + " |"
                      for r in self.raw_frame]
            parts.append("\n".join(lines))
        return "\n\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """``{"n_images": ..., "round_trip": {...}, "raw_frame": [...]}``."""
        return to_plain({"n_images": self.n_images, "round_trip": self.round_trip, "raw_frame": self.raw_frame})


def load_samples(samples_dir: str | Path, limit: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """The labelled photographs of ``samples_dir/labels.csv`` as RGB arrays and int labels."""
    items, errors = read_labels_csv(Path(samples_dir) / "labels.csv")
    if errors:
        raise ValueError(f"{samples_dir}: {len(errors)} bad label rows, first: {errors[0]}")
    items = sorted(items, key=lambda it: it.path.name)[:limit]
    images = [decode(it.path) for it in items]
    return images, np.array([it.labels[0] for it in items], dtype=np.int64)


def _predict(classifier: Any, images: Sequence[np.ndarray | None] | np.ndarray, k: int) -> np.ndarray:
    """Ranked classes [n, k]; -1 rows for images that failed earlier or in the classifier."""
    out = np.full((len(images), k), -1, dtype=np.int64)
    idx = [i for i, im in enumerate(images) if im is not None]
    if idx:
        pred = classifier.predict([images[i] for i in idx], k=k)
        for row, i in enumerate(idx):
            if pred.errors[row] is None:
                out[i] = pred.classes[row]
    return out


def _share_correct(pred: np.ndarray, labels: Any, k: int) -> float:
    """Share of all images whose top-k ``pred`` [n, >=k] holds a correct class (failed images count as wrong)."""
    sets = normalize_label_sets(labels, len(pred))[:, None, :]  # [n, 1, L], padded with -1
    return float(((pred[:, :k, None] == sets) & (sets >= 0)).any(axis=(1, 2)).mean())


def _rates(pred: np.ndarray, labels: Any) -> tuple[float, float, np.ndarray, np.ndarray]:
    r1 = instability(pred, labels, k=1)
    r5 = instability(pred, labels, k=5)
    return r1.rate, r5.rate, r1.accuracy, r5.accuracy


def isp_table(
    images: Sequence[np.ndarray | isp.RawImage], labels: Any, classifier: Any, isps: Sequence[str] = DEFAULT_ISPS,
    seed: int = 0, shot_noise: float = SHOT_NOISE, read_noise: float = READ_NOISE,
) -> IspTable:
    """Accuracy per ISP and instability across ISPs (the source study's Table 4 shape).

    Every ISP develops the same simulated capture of each image: unprocessing and
    noise are keyed by (seed, image index), and each name gets the noise unless it
    sets its own ``shot=``/``read=``. A real raw capture (:class:`instab.isp.RawImage`)
    is developed by each ISP from its own mosaic, with no added noise; its
    "original" is the default development (:func:`instab.isp.develop_default`).
    ``labels``: int [n], or one set of correct classes per image.
    """
    t0 = time.perf_counter()
    original = _predict(classifier, rawfile.for_environment(list(images), False), 5)
    orig1, orig5 = _share_correct(original, labels, 1), _share_correct(original, labels, 5)
    preds, errors = [], []
    for name in isps:
        if "shot=" not in name and "read=" not in name:
            name = f"{name},shot={shot_noise},read={read_noise}"
        out = environments.parse(name).apply(list(images), seed=seed)
        errors.append(sum(e is not None for e in out.errors))
        preds.append(_predict(classifier, out.images, 5))
    pred = np.stack(preds, axis=1)  # [n, e, 5]
    rate1, rate5, acc1, acc5 = _rates(pred, labels)
    libraw = [i for i, s in enumerate(isps) if "libraw-" in s]
    ours = [i for i, s in enumerate(isps) if "instab-" in s]

    def sub(cols: list[int]) -> float:  # instability among some of the ISPs; undefined for fewer than two
        return instability(pred[:, cols], labels, k=1).rate if len(cols) >= 2 else float("nan")

    return IspTable(
        isps=list(isps), n_images=len(images), original_top1=orig1, original_top5=orig5, top1=acc1.tolist(),
        top5=acc5.tolist(), errors=errors,
        instability_top1=rate1, instability_top5=rate5, instability_libraw_top1=sub(libraw),
        instability_instab_top1=sub(ours), seconds=time.perf_counter() - t0,
    )


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """A device's codec: JPEG (Pillow/libjpeg, 4:2:0) encode and decode."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return decode(buf.getvalue())


def raw_mitigation(
    images: Sequence[np.ndarray], labels: Any, classifier: Any, seed: int = 0,
    device_a: str = "isp:libraw-ahd,pattern=rggb", codec_a: int = 90,
    device_b: str = "isp:libraw-vng,awb,gamma=bt709,pattern=grbg", codec_b: int = 70,
    consistent: str = "malvar", shot_noise: float = SHOT_NOISE, read_noise: float = READ_NOISE,
) -> RawMitigationResult:
    """Two devices with their own capture, ISP and JPEG quality vs their raw through one pipeline.

    Device X captures raw_X = unprocess(image) with its own Bayer layout and its
    own noise draw (seed, seed + 1); as shipped it develops raw_X with its ISP
    and encodes with its JPEG quality. The mitigation develops the same raw_A
    and raw_B with instab's pipeline (``consistent`` demosaic, camera white
    balance, sRGB) and no codec.
    """
    devs = []
    consistent_out = []
    for k, (name, q) in enumerate(((device_a, codec_a), (device_b, codec_b))):
        env = environments.parse(f"{name},shot={shot_noise},read={read_noise}")
        if not isinstance(env, IspEnvironment):
            raise ValueError(f"{name}: expected an isp: environment")
        shipped: list[np.ndarray | None] = []
        ours: list[np.ndarray | None] = []
        for i, im in enumerate(images):
            try:  # one capture per image, keyed by (device seed, image index)
                m = env.raw(im, seed=seed + k, first_index=i)
            except ValueError:  # e.g. too small for a Bayer pattern
                shipped.append(None)
                ours.append(None)
                continue
            try:
                shipped.append(_jpeg(env.develop(m), q))
            except ValueError:  # LibRaw refuses very small frames
                shipped.append(None)
            ours.append(isp.develop(m, env.meta, consistent, tone=env.tone, gamma="srgb"))
        devs.append(_predict(classifier, shipped, 5))
        consistent_out.append(_predict(classifier, ours, 5))
    dev = np.stack(devs, axis=1)
    con = np.stack(consistent_out, axis=1)
    d1, d5, dacc, _ = _rates(dev, labels)
    c1, c5, cacc, _ = _rates(con, labels)
    return RawMitigationResult(
        devices=[f"{device_a} + JPEG q={codec_a}", f"{device_b} + JPEG q={codec_b}"],
        consistent=f"instab-{consistent}", n_images=len(images), device_top1=dacc.tolist(),
        consistent_top1=cacc.tolist(), instability_devices_top1=d1, instability_consistent_top1=c1,
        instability_devices_top5=d5, instability_consistent_top5=c5,
    )


def raw_frame_psnr(raw_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """PSNR (dB) between instab's and LibRaw's development of the shared real frame, per file and method pair."""
    raw_dir = Path(raw_dir)
    meta_j = json.loads((raw_dir / "meta.json").read_text())
    pairs = [("bilinear", "linear"), ("malvar", "linear"), ("malvar", "ahd"), ("ha", "ahd"), ("ha", "dht")]
    rows = []
    for name, pattern in meta_j["files"].items():
        mosaic = isp.read_headerless(raw_dir / name, meta_j["height"], meta_j["width"])
        meta = isp.RawMeta(
            pattern=pattern, black_level=meta_j["black_level"], white_level=meta_j["white_level"],
            wb_gains=meta_j["white_balance_gains_rgb"], xyz_to_cam=meta_j["color_matrix_2_xyz_to_camera"],
        )
        row: dict[str, Any] = {"file": name, "pattern": pattern}
        for ours, theirs in pairs:
            a = isp.develop(mosaic, meta, ours, tone="none", gamma="srgb")
            b = develop_libraw(mosaic, meta, theirs, gamma="srgb")
            row[f"instab-{ours} vs libraw-{theirs}"] = round(isp.psnr(a, b), 2)
        rows.append(row)
    return rows


def round_trip_psnr(
    samples: str | os.PathLike | Sequence[str | os.PathLike], limit: int | None = 40, blur: float = 0.0,
    pattern: str = "rggb", errors: list[str] | None = None,
) -> dict[str, dict[str, float]]:
    """unprocess -> develop (no noise) PSNR over photographs, per demosaic.

    ``samples``: image files, or a folder whose ``*.JPEG`` files are used in name
    order; ``limit`` keeps the first N (None: all). ``blur``: Gaussian blur radius
    (pixels) applied first, standing in for a camera's optical low-pass filter
    (sharpened JPEGs hold detail at the Nyquist limit that no Bayer sensor
    records). Returns median, minimum and share >= 30 dB per demosaic. With an
    ``errors`` list, a file that cannot be read is skipped and its message
    appended there (without one, it raises).
    """
    if isinstance(samples, (str, os.PathLike)):
        files = sorted(Path(samples).glob("*.JPEG"))
    else:
        files = [Path(f) for f in samples]
    files = files[:limit]
    if not files:
        raise ValueError(f"round trip: no images in {samples}")
    psnr: dict[str, list[float]] = {d: [] for d in isp.DEMOSAICS}
    for f in files:
        try:
            im = Image.open(f).convert("RGB")
        except (OSError, ValueError) as exc:
            if errors is None:
                raise
            errors.append(f"{Path(f).name}: cannot read ({type(exc).__name__}: {exc})")
            continue
        if blur > 0:
            im = im.filter(ImageFilter.GaussianBlur(blur))
        a = np.asarray(im)
        mosaic, meta = isp.unprocess(a, pattern)
        for d in isp.DEMOSAICS:
            psnr[d].append(isp.psnr(isp.develop(mosaic, meta, d), a))
    if not psnr[isp.DEMOSAICS[0]]:
        raise ValueError(f"round trip: none of the {len(files)} images could be read")
    return {
        d: {"median": round(float(np.median(v)), 2), "min": round(float(np.min(v)), 2),
            "share_30dB": round(float(np.mean(np.array(v) >= 30)), 3)}
        for d, v in psnr.items()
    }


def isp_experiment(
    images_dir: str | os.PathLike, labels_csv: str | os.PathLike, model: Any, *, limit: int | None = None,
    seed: int = 0, threads: int | None = None, progress: Progress | None = None,
) -> IspStudy:
    """:func:`isp_table` and :func:`raw_mitigation` on a labelled folder with one model (name, path or Model).

    Label rows without a usable file and images that cannot be decoded are left
    out and listed in ``input_errors``, with the ISPs' failures. A bad ``threads`` raises
    (see :func:`~instab._shared.validation.check_threads`) before any image is read.
    ``progress`` receives an ``"isp N/2"`` count after each of the two parts (None: quiet).
    """
    check_threads(threads)
    items, errors = read_labels_csv(labels_csv, images_dir, limit)
    pixels: list[np.ndarray | isp.RawImage] = []
    label_sets = []
    for it in items:
        try:
            pixels.append(rawfile.decode(it.path, raw="keep"))  # real raw files go to each ISP as they are
        except Exception as exc:  # a corrupt file is left out, the rest go on
            errors.append(f"{it.path.name}: cannot read ({type(exc).__name__}: {exc})")
            continue
        label_sets.append(it.labels)
    if not pixels:
        raise ValueError(f"isp: no usable images in {labels_csv} ({'; '.join(errors[:3])})")
    clf = Classifier(model if isinstance(model, _models.Model) else _models.load(model), threads=threads)
    table = isp_table(pixels, label_sets, clf, seed=seed)
    report(progress, "isp", 1, 2, "parts")
    errors += [f"{name}: failed on {n} images" for name, n in zip(table.isps, table.errors, strict=True) if n]
    # The mitigation simulates two captures of one scene: a real raw file enters it developed by default.
    mitigation = raw_mitigation(rawfile.for_environment(pixels, False), label_sets, clf, seed=seed)
    report(progress, "isp", 2, 2, "parts")
    return IspStudy(table, mitigation, errors)


def psnr_experiment(
    images: Sequence[str | os.PathLike] | None = None, raw_dir: str | os.PathLike | None = None,
    blurs: Sequence[float] = (0.0, 1.0),
) -> PsnrStudy:
    """Round-trip PSNR of ``images`` at each blur radius, and the real frame of ``raw_dir`` vs LibRaw.

    Either part is skipped when its input is None; at least one must be given.
    Images that cannot be read are left out and listed in ``input_errors``.
    """
    if not images and raw_dir is None:
        raise ValueError("isp-psnr: give images (--images/--labels) and/or a raw frame folder (--raw)")
    errors: list[str] = []
    round_trip = {}
    paths = list(images) if images else []
    for i, b in enumerate(blurs if paths else ()):
        # the same files at every blur: their read errors are kept once
        round_trip[str(float(b))] = round_trip_psnr(paths, None, b, errors=errors if i == 0 else [])
    rows = raw_frame_psnr(raw_dir) if raw_dir is not None else []
    return PsnrStudy(len(paths) - len(errors) if paths else 0, round_trip, rows, errors)


__all__ = [
    "DEFAULT_ISPS",
    "IspStudy",
    "IspTable",
    "PsnrStudy",
    "READ_NOISE",
    "RawMitigationResult",
    "SHOT_NOISE",
    "isp_experiment",
    "isp_table",
    "load_samples",
    "psnr_experiment",
    "raw_frame_psnr",
    "raw_mitigation",
    "round_trip_psnr",
]
