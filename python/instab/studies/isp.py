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

Run all three: ``python -m instab.studies.isp --samples DIR --raw DIR``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from instab import environments, isp
from instab.environments.isp_kinds import IspEnvironment, develop_libraw
from instab.metrics.instability import instability

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
        for name, a1, a5, e in zip(self.isps, self.top1, self.top5, self.errors):
            lines.append(f"| `{name}` | {a1:.3f} | {a5:.3f} | {e} |")
        lines.append(
            f"\nInstability across all {len(self.isps)} ISPs ({self.n_images} images): "
            f"top-1 {self.instability_top1:.3f}, top-5 {self.instability_top5:.3f}; "
            f"LibRaw ISPs only top-1 {self.instability_libraw_top1:.3f}; "
            f"instab demosaics only top-1 {self.instability_instab_top1:.3f}."
        )
        return "\n".join(lines)


@dataclass
class MitigationResult:
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


def load_samples(samples_dir: str | Path, limit: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """The labelled photographs of ``samples_dir/labels.csv`` as RGB arrays and int labels."""
    from instab.io.manifest import read_labels_csv

    items, errors = read_labels_csv(Path(samples_dir) / "labels.csv")
    if errors:
        raise ValueError(f"{samples_dir}: {len(errors)} bad label rows, first: {errors[0]}")
    items = sorted(items, key=lambda it: it.path.name)[:limit]
    images = [np.asarray(Image.open(it.path).convert("RGB")) for it in items]
    return images, np.array([it.labels[0] for it in items], dtype=np.int64)


def _predict(classifier: Any, images: Sequence[np.ndarray | None], k: int) -> np.ndarray:
    """Ranked classes [n, k]; -1 rows for images that failed earlier or in the classifier."""
    out = np.full((len(images), k), -1, dtype=np.int64)
    idx = [i for i, im in enumerate(images) if im is not None]
    if idx:
        pred = classifier.predict([images[i] for i in idx], k=k)
        for row, i in enumerate(idx):
            if pred.errors[row] is None:
                out[i] = pred.classes[row]
    return out


def _rates(pred: np.ndarray, labels: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    r1 = instability(pred, labels, k=1)
    r5 = instability(pred, labels, k=5)
    return r1.rate, r5.rate, r1.accuracy, r5.accuracy


def isp_table(
    images: Sequence[np.ndarray], labels: np.ndarray, classifier: Any, isps: Sequence[str] = DEFAULT_ISPS,
    seed: int = 0, shot_noise: float = SHOT_NOISE, read_noise: float = READ_NOISE,
) -> IspTable:
    """Accuracy per ISP and instability across ISPs (the source study's Table 4 shape).

    Every ISP develops the same simulated capture of each image: unprocessing and
    noise are keyed by (seed, image index), and each name gets the noise unless it
    sets its own ``shot=``/``read=``.
    """
    t0 = time.perf_counter()
    original = _predict(classifier, images, 5)
    labels_col = np.asarray(labels).reshape(-1, 1)
    orig1 = float(np.mean(original[:, 0] == labels_col[:, 0]))
    orig5 = float(np.mean((original == labels_col).any(axis=1)))
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
    sub = lambda cols: instability(pred[:, cols], labels, k=1).rate if len(cols) >= 2 else float("nan")  # noqa: E731
    return IspTable(
        isps=list(isps), n_images=len(images), original_top1=orig1, original_top5=orig5, top1=acc1.tolist(), top5=acc5.tolist(), errors=errors,
        instability_top1=rate1, instability_top5=rate5, instability_libraw_top1=sub(libraw),
        instability_instab_top1=sub(ours), seconds=time.perf_counter() - t0,
    )


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """A device's codec: JPEG (Pillow/libjpeg, 4:2:0) encode and decode."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def raw_mitigation(
    images: Sequence[np.ndarray], labels: np.ndarray, classifier: Any, seed: int = 0,
    device_a: str = "isp:libraw-ahd,pattern=rggb", codec_a: int = 90,
    device_b: str = "isp:libraw-vng,awb,gamma=bt709,pattern=grbg", codec_b: int = 70,
    consistent: str = "malvar", shot_noise: float = SHOT_NOISE, read_noise: float = READ_NOISE,
) -> MitigationResult:
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
    return MitigationResult(
        devices=[f"{device_a} + JPEG q={codec_a}", f"{device_b} + JPEG q={codec_b}"],
        consistent=f"instab-{consistent}", n_images=len(images), device_top1=dacc.tolist(),
        consistent_top1=cacc.tolist(), instability_devices_top1=d1, instability_consistent_top1=c1,
        instability_devices_top5=d5, instability_consistent_top5=c5,
    )


def raw_frame_psnr(raw_dir: str | Path) -> list[dict[str, Any]]:
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
    samples_dir: str | Path, limit: int = 40, blur: float = 0.0, pattern: str = "rggb"
) -> dict[str, dict[str, float]]:
    """unprocess -> develop (no noise) PSNR over the first ``limit`` sample photographs, per demosaic.

    ``blur``: Gaussian blur radius (pixels) applied first, standing in for a camera's
    optical low-pass filter (sharpened JPEGs hold detail at the Nyquist limit that no
    Bayer sensor records). Returns median, minimum and share >= 30 dB per demosaic.
    """
    from PIL import ImageFilter

    files = sorted(Path(samples_dir).glob("*.JPEG"))[:limit]
    psnr: dict[str, list[float]] = {d: [] for d in isp.DEMOSAICS}
    for f in files:
        im = Image.open(f).convert("RGB")
        if blur > 0:
            im = im.filter(ImageFilter.GaussianBlur(blur))
        a = np.asarray(im)
        mosaic, meta = isp.unprocess(a, pattern)
        for d in isp.DEMOSAICS:
            psnr[d].append(isp.psnr(isp.develop(mosaic, meta, d), a))
    return {
        d: {"median": round(float(np.median(v)), 2), "min": round(float(np.min(v)), 2),
            "share_30dB": round(float(np.mean(np.array(v) >= 30)), 3)}
        for d, v in psnr.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=Path, help="labelled images (labels.csv), e.g. ../shared/data/imagenet-samples")
    ap.add_argument("--raw", type=Path, help="the shared raw frame folder, e.g. ../shared/data/raw")
    ap.add_argument("--model", default="mobilenet_v2_1.0_224_int8_st")
    ap.add_argument("--limit", type=int, default=None, help="use the first N images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    ap.add_argument("--round-trip", action="store_true", help="round-trip PSNR on the samples (no classifier)")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    if args.round_trip and args.samples:
        for blur in (0.0, 1.0):
            results[f"round_trip_blur{blur}"] = round_trip_psnr(args.samples, args.limit or 40, blur)
            print(f"round trip, blur {blur}:", results[f"round_trip_blur{blur}"])
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
        return 0
    if args.raw:
        results["raw_frame_psnr"] = raw_frame_psnr(args.raw)
        for row in results["raw_frame_psnr"]:
            print(row)
    if args.samples:
        import instab
        from instab import models

        classifier = instab.Classifier(models.load(args.model))
        images, labels = load_samples(args.samples, args.limit)
        table = isp_table(images, labels, classifier, seed=args.seed)
        print(table.markdown(), f"\n({table.seconds:.0f} s)\n")
        mit = raw_mitigation(images, labels, classifier, seed=args.seed)
        print(mit.markdown())
        results["isp_table"] = asdict(table)
        results["raw_mitigation"] = asdict(mit)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "DEFAULT_ISPS",
    "IspTable",
    "MitigationResult",
    "READ_NOISE",
    "SHOT_NOISE",
    "isp_table",
    "load_samples",
    "main",
    "raw_frame_psnr",
    "raw_mitigation",
    "round_trip_psnr",
]
