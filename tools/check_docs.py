"""Rerun the measurements quoted in docs/*.md and compare them with the documented values.

Each claim names the doc file, the exact text that quotes the values (so a doc edited
without its check fails too), the documented values, an absolute tolerance with its
reason, and a function that measures them on ../shared. Next to each number the doc
names the command that reproduces it: ``python tools/check_docs.py --only NAME``.

    python tools/check_docs.py              # the quick claims (seconds each)
    python tools/check_docs.py --all        # also the slow ones (a minute or more each)
    python tools/check_docs.py --only NAME  # one claim (quick or slow), printing what it measures
    python tools/check_docs.py --list       # the claims, their docs and tolerances

Timings (the speed tables) are not compared: they depend on the machine and its load;
the doc names the benchmark that measures them. Exit status: 0 when every claim run
matches, 1 on a mismatch or a missing quote, 2 on bad arguments or missing ../shared.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SAMPLES = SHARED / "data" / "imagenet-samples"
MODELS = SHARED / "models"
RAW = SHARED / "data" / "raw"
ST = "mobilenet_v2_1.0_224_int8_st.onnx"
CORAL = "mobilenet_v2_1.0_224_uint8_coral.onnx"
V1 = "mobilenet_v1_0.5_128_uint8_st.onnx"


@dataclass(frozen=True)
class Claim:
    """Values quoted in a doc and how to measure them again."""

    name: str
    doc: str  # file under docs/
    quote: tuple[str, ...]  # text that must appear in the doc, holding the values
    expected: dict[str, float]
    tol: float  # absolute, on every value
    reason: str  # why that tolerance
    measure: Callable[[], dict[str, float]]
    slow: bool = False


# ---------------------------------------------------------------------------
# shared helpers


def _labelled(limit: int | None = None) -> tuple[list[Path], np.ndarray]:
    rows = list(csv.DictReader(open(SAMPLES / "labels.csv")))[:limit]
    return [SAMPLES / r["file"] for r in rows], np.array([int(r["class_index"]) for r in rows])


def _decoded(paths: list[Path]) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def _top1(model, images, labels) -> float:
    import instab

    return float((instab.Classifier(model).predict(images, k=1).classes[:, 0] == labels).mean())


# ---------------------------------------------------------------------------
# docs/models.md


def efficientnet_choices() -> dict[str, float]:
    """Top-1 on the first 200 shared images: SAME vs symmetric padding, TF vs ImageNet normalisation."""
    import onnx

    from instab import models
    from instab.models import efficientnet

    paths, labels = _labelled(200)
    images = _decoded(paths)
    # A float graph loaded from a file gets ImageNet mean/std unless told otherwise (models.infer_spec).
    tf = {"scale": (1 / 128,) * 3, "offset": (-127 / 128,) * 3}
    imagenet = {"mean": models.IMAGENET_MEAN, "std": models.IMAGENET_STD}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for padding in ("same", "symmetric"):
            path = Path(tmp) / f"{padding}.onnx"
            onnx.save(efficientnet.build(padding=padding), str(path))
            for norm, spec in (("tf", tf), ("imagenet", imagenet)):
                out[f"{padding}+{norm}"] = _top1(models.load(path, spec=spec), images, labels)
    return out


def accuracy_table() -> dict[str, float]:
    """Top-1 / top-5 on the 800 shared images, int8 and dequantized, and int8-vs-float agreement."""
    import instab
    from instab import models

    paths, labels = _labelled()
    out = {}
    for name, file in (("efficientnet-lite0", None), ("mobilenet-v2-int8-st", ST), ("mobilenet-v2-coral", CORAL),
                       ("mobilenet-v1-0.5-128-st", V1)):
        m = models.load(name if file is None else MODELS / file)
        variants = [("", m)] if file is None else [("", m), (", dequantized", models.dequantize(m))]
        top1 = {}
        for suffix, model in variants:
            c = instab.Classifier(model).predict(paths, k=5).classes
            top1[suffix] = c[:, 0]
            out[f"{name}{suffix} top-1"] = float((c[:, 0] == labels).mean())
            out[f"{name}{suffix} top-5"] = float((c == labels[:, None]).any(axis=1).mean())
        if file is not None:
            out[f"{name} agreement"] = float((top1[""] == top1[", dequantized"]).mean())
    return out


def rounded_longer_side() -> dict[str, float]:
    """Top-1 (800 images) when the longer side is rounded instead of truncated: Pillow + numpy + ONNX Runtime."""
    import onnxruntime as ort
    from PIL import Image

    from instab import models

    paths, labels = _labelled()
    images = [Image.fromarray(a) for a in _decoded(paths)]
    crops = np.empty((len(images), 224, 224, 3), np.uint8)
    for i, im in enumerate(images):
        w, h = im.size
        s = round(224 / 0.875)
        nw, nh = (s, round(s * h / w)) if w <= h else (round(s * w / h), s)
        left, top = round((nw - 224) / 2), round((nh - 224) / 2)
        crops[i] = np.asarray(im.resize((nw, nh), Image.BILINEAR).crop((left, top, left + 224, top + 224)))
    out = {}
    # (ONNX bytes or path, x * scale + offset, class offset): Coral x/128 - 1, 1001 classes; EfficientNet (x-127)/128.
    for name, source, offset, shift in (("mobilenet-v2-coral", str(MODELS / CORAL), -1.0, 1),
                                        ("efficientnet-lite0", models.load("efficientnet-lite0").serialized(),
                                         -127 / 128, 0)):
        session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        inp = session.get_inputs()[0].name
        top = []
        for c in crops:  # batch 1: the Coral file has a fixed batch
            x = (c.astype(np.float32) * np.float32(1 / 128) + np.float32(offset)).transpose(2, 0, 1)[None]
            top.append(int(session.run(None, {inp: np.ascontiguousarray(x)})[0].argmax()) - shift)
        out[name] = float((np.array(top) == labels).mean())
    return out


def draft_decode_count() -> dict[str, float]:
    """Shared images whose shorter side is at least 512 (where Pillow's draft mode can scale by 1/2)."""
    from PIL import Image

    paths, _ = _labelled()
    n = 0
    for p in paths:
        with Image.open(p) as im:
            n += min(im.size) >= 512
    return {"images with shorter side >= 512": float(n)}


# ---------------------------------------------------------------------------
# docs/isp.md


def isp_round_trip() -> dict[str, float]:
    """unprocess -> develop PSNR on the first 40 photographs, as they are and blurred by 1 px."""
    from instab.studies.isp import round_trip_psnr

    out = {}
    for blur in (0.0, 1.0):
        for method, v in round_trip_psnr(SAMPLES, limit=40, blur=blur).items():
            out[f"blur {blur:g} {method} median"] = v["median"]
            out[f"blur {blur:g} {method} min"] = v["min"]
    return out


def isp_real_frame() -> dict[str, float]:
    """The shared Nikon frame, ours vs LibRaw, PSNR per file and method pair."""
    from instab.studies.isp import raw_frame_psnr

    return {f"{row['pattern']} {k}": v for row in raw_frame_psnr(RAW) for k, v in row.items()
            if k not in ("file", "pattern")}


def isp_accuracy_noise() -> dict[str, float]:
    """Top-1 on the first 200 photographs through three ISPs, without and with the default noise."""
    import instab
    from instab import models
    from instab.studies import isp as ex

    images, labels = ex.load_samples(SAMPLES, limit=200)
    clf = instab.Classifier(models.load(MODELS / ST))
    isps = ("isp:libraw-ahd", "isp:instab-malvar", "isp:instab-bilinear")
    out = {}
    for label, noise in (("no noise", (0.0, 0.0)), ("noise", (ex.SHOT_NOISE, ex.READ_NOISE))):
        table = ex.isp_table(images, labels, clf, isps=isps, shot_noise=noise[0], read_noise=noise[1])
        out["original"] = table.original_top1
        out.update({f"{label} {name[4:]}": acc for name, acc in zip(isps, table.top1, strict=True)})
    return out


# ---------------------------------------------------------------------------
# docs/preprocessing.md


def opencv_vs_preprocess() -> dict[str, float]:
    """Mean and max |difference| in levels, cv2.resize vs instab.preprocess, first 64 shared JPEGs (name order)."""
    import cv2

    import instab
    from instab.inference.preprocessing import resize_plan

    images = _decoded(sorted(SAMPLES.glob("*.JPEG"))[:64])
    ours = instab.preprocess(images, 224, crop=0.875, dtype="uint8")
    out = {}
    for name in ("INTER_AREA", "INTER_LINEAR"):
        diffs = []
        for im, mine in zip(images, ours, strict=True):
            rh, rw, top, left = resize_plan(*im.shape[:2], 224, 0.875)
            r = cv2.resize(im, (rw, rh), interpolation=getattr(cv2, name))
            diffs.append(np.abs(r[top : top + 224, left : left + 224].astype(int) - mine))
        d = np.stack(diffs)
        out[f"{name} mean"], out[f"{name} max"] = float(d.mean()), float(d.max())
    return out


def resizer_accuracy() -> dict[str, float]:
    """ST MobileNetV2 on the first 200 shared images per resizer: top-1, instability against the default, overall."""
    import instab
    from instab import models
    from instab.inference import RESIZERS

    paths, labels = _labelled(200)
    images = _decoded(paths)
    model = models.load(MODELS / ST)
    scores = np.stack([instab.Classifier(model, resizer=r).predict(images, k=1, full_scores=True).full_scores
                       for r in RESIZERS], axis=1)
    result = instab.instability(scores, labels, k=1)
    pairwise = result.pairwise()
    out = {"all resizers instability": result.rate}
    for i, r in enumerate(RESIZERS):
        out[f"{r} top-1"] = float(result.accuracy[i])
        out[f"{r} vs pillow-bilinear"] = float(pairwise[0, i])
    return out


def pillow_on_shared_images() -> dict[str, float]:
    """Max |difference| instab.preprocess vs Pillow resize + crop on the 800 JPEGs; vertical-first count."""
    from PIL import Image

    import instab
    from instab.inference.preprocessing import resize_plan

    paths = sorted(SAMPLES.glob("*.JPEG"))
    worst, vertical = 0, 0
    for start in range(0, len(paths), 100):
        images = _decoded(paths[start : start + 100])
        ours = instab.preprocess(images, 224, crop=0.875, dtype="uint8")
        for im, mine in zip(images, ours, strict=True):
            h, w = im.shape[:2]
            rh, rw, top, left = resize_plan(h, w, 224, 0.875)
            vertical += rh < h and h - rh > 2 * (w - rw)  # Pillow 13's vertical-first rule
            pil = Image.fromarray(im).resize((rw, rh), Image.BILINEAR).crop((left, top, left + 224, top + 224))
            worst = max(worst, int(np.abs(np.asarray(pil).astype(int) - mine).max()))
    return {"max abs difference": float(worst), "vertical-first images": float(vertical)}


# ---------------------------------------------------------------------------

_PAIRS = (("bilinear", "linear"), ("malvar", "linear"), ("malvar", "ahd"), ("ha", "ahd"), ("ha", "dht"))

CLAIMS = [
    Claim("models-efficientnet-choices", "models.md",
          ("SAME padding with `(x-127)/128` 0.875; symmetric padding 0.860; ImageNet mean/std 0.805 (SAME) / 0.760 "
           "(symmetric)",),
          {"same+tf": 0.875, "symmetric+tf": 0.860, "same+imagenet": 0.805, "symmetric+imagenet": 0.760},
          0.0, "deterministic (same images, same ONNX Runtime)", efficientnet_choices, slow=True),
    Claim("models-accuracy", "models.md",
          ("| efficientnet-lite0 | 0.8925 | 0.9775 |", "| mobilenet-v2-int8-st | 0.8275 | 0.9712 |",
           "| mobilenet-v2-int8-st, dequantized | 0.8275 | 0.9663 |", "| mobilenet-v2-coral | 0.9012 | 0.9875 |",
           "| mobilenet-v2-coral, dequantized | 0.9012 | 0.9850 |", "| mobilenet-v1-0.5-128-st | 0.6438 | 0.8562 |",
           "| mobilenet-v1-0.5-128-st, dequantized | 0.6400 | 0.8550 |",
           "0.9663 (MobileNetV2 ST),\n0.9875 (MobileNetV2 Coral), 0.9538 (MobileNetV1 ST)"),
          {"efficientnet-lite0 top-1": 0.8925, "efficientnet-lite0 top-5": 0.9775,
           "mobilenet-v2-int8-st top-1": 0.8275, "mobilenet-v2-int8-st top-5": 0.9712,
           "mobilenet-v2-int8-st, dequantized top-1": 0.8275, "mobilenet-v2-int8-st, dequantized top-5": 0.9663,
           "mobilenet-v2-coral top-1": 0.9012, "mobilenet-v2-coral top-5": 0.9875,
           "mobilenet-v2-coral, dequantized top-1": 0.9012, "mobilenet-v2-coral, dequantized top-5": 0.9850,
           "mobilenet-v1-0.5-128-st top-1": 0.6438, "mobilenet-v1-0.5-128-st top-5": 0.8562,
           "mobilenet-v1-0.5-128-st, dequantized top-1": 0.6400, "mobilenet-v1-0.5-128-st, dequantized top-5": 0.8550,
           "mobilenet-v2-int8-st agreement": 0.9663, "mobilenet-v2-coral agreement": 0.9875,
           "mobilenet-v1-0.5-128-st agreement": 0.9538},
          0.00007, "quoted to 4 decimals (800 images: steps of 0.00125); deterministic", accuracy_table, slow=True),
    Claim("models-geometry-rounding", "models.md",
          ("rounding the longer side instead of truncating it gives 0.9000 for\nCoral and 0.8950 for "
           "EfficientNet-Lite0",),
          {"mobilenet-v2-coral": 0.9000, "efficientnet-lite0": 0.8950}, 0.00007,
          "quoted to 4 decimals (800 images: steps of 0.00125); deterministic", rounded_longer_side, slow=True),
    Claim("models-draft-count", "models.md", ("(44 of the 800 images have a shorter\nside >= 512;",),
          {"images with shorter side >= 512": 44}, 0.0, "a count", draft_decode_count),
    Claim("isp-round-trip", "isp.md",
          ("| the JPEGs as they are | 24.6 / 14.4 dB (20% >= 30 dB) | 29.0 / 17.7 dB | 30.8 / 16.9 dB |",
           "| Gaussian blur 1 px first (optical low-pass) | 37.7 / 29.8 dB (97.5% >= 30 dB) | 42.4 / 36.6 dB | "
           "44.1 / 37.7 dB |"),
          {"blur 0 bilinear median": 24.6, "blur 0 bilinear min": 14.4, "blur 0 malvar median": 29.0,
           "blur 0 malvar min": 17.7, "blur 0 ha median": 30.8, "blur 0 ha min": 16.9,
           "blur 1 bilinear median": 37.7, "blur 1 bilinear min": 29.8, "blur 1 malvar median": 42.4,
           "blur 1 malvar min": 36.6, "blur 1 ha median": 44.1, "blur 1 ha min": 37.7},
          0.05, "quoted to 0.1 dB; deterministic", isp_round_trip),
    Claim("isp-real-frame", "isp.md",
          ("| rggb | 53.98 dB | 34.90 | 38.19 | 41.32 | 38.66 |",
           "| grbg | 53.93 dB | 32.05 | 31.18 | 32.94 | 31.95 |",
           "| gbrg | 53.93 dB | 31.89 | 30.84 | 32.63 | 31.44 |",
           "| bggr | 54.00 dB | 34.61 | 36.56 | 39.18 | 36.29 |"),
          {f"{p} instab-{a} vs libraw-{b}": v for p, vals in (
              ("rggb", (53.98, 34.90, 38.19, 41.32, 38.66)),
              ("grbg", (53.93, 32.05, 31.18, 32.94, 31.95)),
              ("gbrg", (53.93, 31.89, 30.84, 32.63, 31.44)),
              ("bggr", (54.00, 34.61, 36.56, 39.18, 36.29)))
           for (a, b), v in zip(_PAIRS, vals, strict=True)},
          0.005, "quoted to 0.01 dB; deterministic", isp_real_frame),
    Claim("isp-accuracy-noise", "isp.md",
          ("without noise\n`libraw-ahd` / `instab-malvar` / `instab-bilinear` reach 0.800 / 0.765 / 0.700 top-1 "
           "(originals 0.840), with the\ndefault noise 0.760 / 0.780 / 0.675",),
          {"original": 0.840, "no noise libraw-ahd": 0.800, "no noise instab-malvar": 0.765,
           "no noise instab-bilinear": 0.700, "noise libraw-ahd": 0.760, "noise instab-malvar": 0.780,
           "noise instab-bilinear": 0.675},
          0.0, "deterministic (seeded noise); 200 images: steps of 0.005", isp_accuracy_noise, slow=True),
    Claim("preprocessing-opencv", "preprocessing.md",
          ("`cv2.resize(INTER_AREA)` differs from this by 1.065 levels on average (max 62) and `INTER_LINEAR` "
           "(no antialiasing) by 2.107 (max 118) on the first 64 shared images in name order",),
          {"INTER_AREA mean": 1.065, "INTER_AREA max": 62, "INTER_LINEAR mean": 2.107, "INTER_LINEAR max": 118},
          0.0005, "means quoted to 0.001 levels, maxima exact; deterministic", opencv_vs_preprocess),
    Claim("preprocessing-resizers", "preprocessing.md",
          ("| pillow-bilinear (default) | 0.840 | 0 |", "| pillow-bicubic | 0.835 | 0.045 |",
           "| pillow-lanczos | 0.845 | 0.045 |", "| pillow-box | 0.830 | 0.080 |", "| opencv-linear | 0.865 | 0.035 |",
           "| opencv-area | 0.830 | 0.030 |", "| opencv-cubic | 0.850 | 0.050 |", "| opencv-nearest | 0.810 | 0.100 |",
           "| nearest | 0.815 | 0.105 |", "across all nine resizers: **0.175**"),
          {"pillow-bilinear top-1": 0.840, "pillow-bilinear vs pillow-bilinear": 0.0,
           "pillow-bicubic top-1": 0.835, "pillow-bicubic vs pillow-bilinear": 0.045,
           "pillow-lanczos top-1": 0.845, "pillow-lanczos vs pillow-bilinear": 0.045,
           "pillow-box top-1": 0.830, "pillow-box vs pillow-bilinear": 0.080,
           "opencv-linear top-1": 0.865, "opencv-linear vs pillow-bilinear": 0.035,
           "opencv-area top-1": 0.830, "opencv-area vs pillow-bilinear": 0.030,
           "opencv-cubic top-1": 0.850, "opencv-cubic vs pillow-bilinear": 0.050,
           "opencv-nearest top-1": 0.810, "opencv-nearest vs pillow-bilinear": 0.100,
           "nearest top-1": 0.815, "nearest vs pillow-bilinear": 0.105, "all resizers instability": 0.175},
          0.0, "deterministic; 200 images: steps of 0.005", resizer_accuracy, slow=True),
    Claim("preprocessing-pillow-800", "preprocessing.md",
          ("| the 800 shared ImageNet JPEGs, `size=224, crop=0.875`, vs Pillow 13 `resize` + `crop` | **0** "
           "(bit-identical;", "None of the 800 shared images takes Pillow 13's vertical-first path"),
          {"max abs difference": 0, "vertical-first images": 0}, 0.0, "exact", pillow_on_shared_images),
]


def _quoted(claim: Claim) -> list[str]:
    text = (ROOT / "docs" / claim.doc).read_text()
    flat = " ".join(text.split())  # the doc may rewrap lines
    return [q for q in claim.quote if " ".join(q.split()) not in flat]


def run(claim: Claim, verbose: bool) -> bool:
    missing = _quoted(claim)
    t0 = time.perf_counter()
    got = claim.measure()
    seconds = time.perf_counter() - t0
    bad = [(k, v, got.get(k)) for k, v in claim.expected.items()
           if got.get(k) is None or abs(got[k] - v) > claim.tol + 1e-12]
    ok = not bad and not missing
    print(f"{'ok  ' if ok else 'FAIL'} {claim.name} ({claim.doc}, {seconds:.1f} s, tolerance {claim.tol:g}: "
          f"{claim.reason})")
    for q in missing:
        print(f"     docs/{claim.doc} no longer quotes: {q!r}")
    for k, want, have in bad:
        print(f"     {k}: documented {want:g}, measured {have if have is None else f'{have:.4f}'}")
    if verbose:
        for k, v in got.items():
            print(f"     {k} = {v:.4f}")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--all", action="store_true", help="also run the slow claims")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this claim (repeatable)")
    p.add_argument("--list", action="store_true", help="list the claims and exit")
    args = p.parse_args(argv)
    by_name = {c.name: c for c in CLAIMS}
    if args.list:
        for c in CLAIMS:
            print(f"{c.name:30s} docs/{c.doc:18s} {'slow' if c.slow else 'quick'}  tolerance {c.tol:g} ({c.reason})")
        return 0
    unknown = [n for n in args.only or [] if n not in by_name]
    if unknown:
        print(f"unknown claim(s): {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    if not SAMPLES.is_dir() or not MODELS.is_dir():
        print(f"{SHARED} is missing: the claims are measured on ../shared", file=sys.stderr)
        return 2
    os.environ.setdefault("INSTAB_MODELS_DIR", str(MODELS))
    chosen = [by_name[n] for n in args.only] if args.only else [c for c in CLAIMS if args.all or not c.slow]
    results = [run(c, verbose=bool(args.only)) for c in chosen]
    skipped = len(CLAIMS) - len(chosen)
    print(f"{sum(results)}/{len(results)} claims match" + (f" ({skipped} slow ones not run: --all)" if skipped else ""))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
