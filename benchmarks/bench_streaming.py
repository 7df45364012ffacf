"""The streamed instability metric's memory: peak RSS on a 10-million-row results dataset.

Full size: 527,000 images x 20 environments, top-5 (10.0 M rows: 5% of the items never
scored, 0.5% failed), written as a results dataset in 64k-row row groups. Each variant
runs in a fresh interpreter that reports its peak RSS and the RSS it had after its imports
(the floor), both read from ``/proc/self/status`` (``VmHWM``: the peak of its own address
space; ``resource.getrusage``'s ``ru_maxrss`` would keep the parent's peak across ``exec``):

- streamed: the default buckets of 1 M rows (10 buckets, spilled to Arrow IPC files);
- in memory: one bucket as large as the dataset (the same code, nothing spilled): what
  any in-memory computation of the metric holds at least.

Both must give the counts that ``instab.instability`` gives on the arrays the dataset was
generated from (computed untimed in the parent). Under --benchmark-disable: 20,000 rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import instab
from instab.io import table
from instab.io.dataset import ResultDataset, environment_digest, folder_name
from instab.io.streaming import BUCKET_ROWS

pa = pytest.importorskip("pyarrow")
pc = pytest.importorskip("pyarrow.compute")
pq = pytest.importorskip("pyarrow.parquet")

IDENTITY = "c3" * 32
N_ENVS, K = 20, 5


def synthetic_dataset(root, n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write ``n_images`` x 20 environments of top-5 results; return the ranked [n, e, 5] arrays (-1: not stored or
    failed) and the labels they were scored against."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 1000, n_images, dtype=np.int32)
    ids = pa.array([f"n{i:08d}.JPEG" for i in range(n_images)])
    label_lists = pa.ListArray.from_arrays(pa.array(np.arange(n_images + 1, dtype=np.int32)), pa.array(labels))
    ranked = np.full((n_images, N_ENVS, K), -1, dtype=np.int32)
    schema = table.arrow_schema()
    with ResultDataset(root, create=True) as ds:
        ds.add_model(IDENTITY, "synthetic")
        for j in range(N_ENVS):
            env = f"device:phone-{j:02d}"
            classes = rng.integers(0, 1000, (n_images, K), dtype=np.int32)
            hit = rng.random(n_images) < 0.7  # mostly right: the label at a random rank
            classes[hit, rng.integers(0, K, int(hit.sum()))] = labels[hit]
            stored = rng.random(n_images) >= 0.05
            failed = stored & (rng.random(n_images) < 0.005)
            ok = stored & ~failed
            ranked[ok, j] = classes[ok]
            rows = np.flatnonzero(stored)
            n = len(rows)
            lengths = np.where(failed[rows], 0, K).astype(np.int32)
            offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
            valid = pa.array(~failed[rows])
            cls = pa.ListArray.from_arrays(offsets, pa.array(classes[ok].reshape(-1)), mask=pc.invert(valid))
            scores = pa.ListArray.from_arrays(offsets, pa.array(np.full(int(lengths.sum()), 0.5, np.float32)),
                                              mask=pc.invert(valid))
            columns = {
                "image_id": ids.take(pa.array(rows)), "path": pa.nulls(n, pa.string()),
                "labels": label_lists.take(pa.array(rows)), "environment": pa.array([env] * n),
                "repeat": pa.array(np.zeros(n, np.int32)), "group": pa.nulls(n, pa.int64()),
                "model": pa.array(["synthetic"] * n), "model_hash": pa.array([IDENTITY] * n),
                "k": pa.array(np.full(n, K, np.int32)), "classes": cls, "scores": scores,
                "correct": pa.array(np.where(failed[rows], None, classes[rows, 0] == labels[rows]).tolist(),
                                    pa.bool_()),
                "error": pa.array(np.where(failed[rows], "cannot decode", None).tolist(), pa.string()),
            }
            part = root / folder_name("synthetic", IDENTITY[:12]) / folder_name(env, environment_digest(env))
            part.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(columns, schema=schema), part / f"run-{j:07d}.parquet", row_group_size=65_536)
    return ranked, labels


_MEASURE = """
import json, sys
from pathlib import Path
from instab.io.streaming import streamed_instability


def peak_mb():  # VmHWM: this address space's peak RSS (ru_maxrss would keep the parent's peak across exec)
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


floor = peak_mb()
r = streamed_instability(sys.argv[1], k=1, bucket_rows=int(sys.argv[2])).metric
print(json.dumps({"floor_mb": floor, "peak_mb": peak_mb(), "n_unstable": r.n_unstable, "n_images": r.n_images,
                  "accuracy": r.accuracy.tolist()}))
"""


def measure(root, bucket_rows: int) -> dict:
    """One streamed_instability run in a fresh interpreter: its peak and floor RSS (MB) and its counts."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_MEASURE), str(root), str(bucket_rows)],
                          capture_output=True, text=True, timeout=1800, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dataset(request, tmp_path_factory):
    full = not request.config.getoption("benchmark_disable")
    n_images = 527_000 if full else 1_000  # 10.0 M rows: 5% of the 10.5 M items are never scored
    root = tmp_path_factory.mktemp("streaming") / "ds"
    ranked, labels = synthetic_dataset(root, n_images)
    truth = instab.instability(ranked, labels[:, None], k=1)
    with ResultDataset(root) as ds:
        rows = ds.count()
    return root, truth, rows, full


def _check(got: dict, truth) -> None:
    assert (got["n_unstable"], got["n_images"]) == (truth.n_unstable, truth.n_images)
    np.testing.assert_array_equal(got["accuracy"], truth.accuracy)


_PEAKS: dict[str, float] = {}


@pytest.mark.benchmark(group="streamed-metric-10M-rows")
@pytest.mark.parametrize("variant", ["streamed", "in_memory"])
def test_metric(benchmark, dataset, variant):
    root, truth, rows, full = dataset
    bucket_rows = rows if variant == "in_memory" else BUCKET_ROWS if full else 2_000
    got = benchmark.pedantic(measure, (root, bucket_rows), rounds=1, iterations=1)
    _check(got, truth)
    benchmark.extra_info.update(rows=rows, bucket_rows=bucket_rows,
                                **{k: round(v, 1) for k, v in got.items() if k.endswith("_mb")})
    print(f"\n{variant}: {rows} rows, buckets of {bucket_rows}: peak RSS {got['peak_mb']:.0f} MB "
          f"(after imports {got['floor_mb']:.0f} MB)")
    _PEAKS[variant] = got["peak_mb"]


def test_streamed_memory_is_bounded(dataset):
    """At full size, the streamed run holds a fraction of what the in-memory run holds."""
    if len(_PEAKS) < 2 or not dataset[3]:
        pytest.skip("needs both runs above at full size")
    assert _PEAKS["streamed"] < 0.5 * _PEAKS["in_memory"], _PEAKS
