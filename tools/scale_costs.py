"""Per-item costs on one core, the inputs of docs/scale.md's throughput estimate.

Each stage runs on N shared photos (about 500x375 JPEGs) with one thread:
decoding, an environment (a codec, a virtual device), writing the result as
``simulate`` does (a PNG), preprocessing + inference of two models (batches of 32),
and the results dataset's per-row costs (a worker encodes a unit's Parquet file, the
driver writes it). Prints a markdown table (milliseconds or microseconds per item).

    python tools/scale_costs.py            # 100 photos
    python tools/scale_costs.py --n 200
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "data" / "imagenet-samples"
MODELS = ROOT.parent / "shared" / "models"


def _per_item(fn: Callable[[], object], n: int) -> float:
    """Seconds per item of ``fn`` (which handles ``n`` items), the best of two runs."""
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / n


def measure(n: int) -> list[tuple[str, float, str]]:
    """(stage, cost per item, unit) rows."""
    import numpy as np
    from PIL import Image

    from instab import Classifier, decode, models, preprocess
    from instab.environments.registry import parse
    from instab.io.dataset import encode_part, write_atomic
    from instab.io.records import ResultRow

    rows = list(csv.DictReader((SAMPLES / "labels.csv").open()))[:n]
    paths = [SAMPLES / r["file"] for r in rows]
    images = [decode(p) for p in paths]
    out: list[tuple[str, float, str]] = [("decode a JPEG photo", _per_item(lambda: [decode(p) for p in paths], n),
                                          "ms")]
    for env in ("jpeg:q=85", "device:phone-mid"):
        e = parse(env)
        out.append((f"environment {env}", _per_item(lambda e=e: e.apply(images, seed=0, threads=1), n), "ms"))

    def png() -> None:
        for im in images:
            Image.fromarray(im).save(io.BytesIO(), format="PNG", compress_level=1)

    out.append(("write the result as PNG (simulate)", _per_item(png, n), "ms"))
    pngs = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG", compress_level=1)
        pngs.append(buf.getvalue())
    out.append(("decode such a PNG (score after simulate)", _per_item(lambda: [decode(b) for b in pngs], n), "ms"))
    out.append(("preprocess alone (resize, crop: 224x224 uint8)",
                _per_item(lambda: preprocess(images, 224, dtype="uint8", threads=1), n), "ms"))
    for name, model in (("mobilenet_v2 int8", MODELS / "mobilenet_v2_1.0_224_int8_st.onnx"),
                        ("efficientnet-lite0 (float)", "efficientnet-lite0")):
        clf = Classifier(models.load(model), threads=1, batch_size=32)
        out.append((f"preprocess + infer {name}", _per_item(lambda clf=clf: clf.predict(images, k=5), n), "ms"))
    rng = np.random.default_rng(0)  # top-5 classes and descending scores, as a model gives them
    unit = [ResultRow("m", f"n{i:08d}.JPEG", "device:phone-mid", 0, f"/data/sim/device_phone-mid/n{i:08d}.png",
                      (int(rng.integers(1000)),), None, rng.choice(1000, 5, replace=False).tolist(),
                      np.sort(rng.random(5, dtype=np.float32))[::-1].tolist(), None, "ab" * 32, 5)
            for i in range(128)]
    out.append(("encode a 128-row dataset file (worker), per row", _per_item(lambda: encode_part(unit), 128), "us"))
    data = encode_part(unit)
    with tempfile.TemporaryDirectory() as tmp:
        out.append(("write it into the dataset (driver), per row",
                    _per_item(lambda: write_atomic(Path(tmp) / "u.parquet", data), 128), "us"))
    out.append(("dataset bytes per row (128-row files)", len(data) / 128, "B"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="photos per stage (default: %(default)s)")
    args = parser.parse_args(argv)
    if not SAMPLES.is_dir():
        print(f"scale_costs: {SAMPLES} is missing (../shared)", file=sys.stderr)
        return 2
    print("| stage (one core) | cost per item |\n|---|---|")
    for stage, seconds, unit in measure(args.n):
        value = seconds if unit == "B" else seconds * (1e3 if unit == "ms" else 1e6)
        print(f"| {stage} | {value:.1f} {unit} |" if unit != "B" else f"| {stage} | {value:.0f} B |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
