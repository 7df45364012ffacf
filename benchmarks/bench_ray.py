"""The Ray engine's own cost: ``score --engine ray`` beside ``score --engine local`` on the same manifest.

Full size: the 800 shared images x 4 environment columns (3200 rows; the columns point at the
same JPEG files, as in bench_score.py), mobilenet_v2_1.0_224_int8_st, batches of 32. The Ray
side runs on a one-node cluster of this machine's 2 CPUs, started before the timing (as a user
keeps a cluster up); its time covers everything ``score_manifest_ray`` does: connecting, the
plan, starting the actors (each loads the model), decoding, inference and writing the dataset.
Each side's rows must equal the other's, compared untimed (both exported to Parquet). Each side
also reports the CPU time it used (Ray: the driver and every process of the cluster), which a
busy machine inflates far less than the wall time. Under --benchmark-disable: 16 images x 4.
"""

from __future__ import annotations

import itertools
import resource

import pytest

from instab.io.export import export_store
from instab.workflow.ray_score import score_manifest_ray
from instab.workflow.score import score_manifest
from tests._support.manifests import sample_manifest
from tests._support.ray_cluster import Cluster, require_ray

pq = pytest.importorskip("pyarrow.parquet")

ENVS = ("device-a", "device-b", "device-c", "device-d")
MODEL = "mobilenet_v2_1.0_224_int8_st.onnx"
KEYS = [(k, "ascending") for k in ("image_id", "environment", "repeat")]
_counter = itertools.count()


@pytest.fixture(scope="module")
def cluster():
    require_ray()
    c = Cluster(workers=0, cpus=2).ready()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def setup(request, samples_dir, models_dir, tmp_path_factory):
    full = not request.config.getoption("benchmark_disable")
    folder = tmp_path_factory.mktemp("ray-bench")
    manifest, rows = sample_manifest(samples_dir, folder, 800 if full else 16, ENVS)
    return manifest, models_dir / MODEL, folder, len(rows) * len(ENVS)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_local(manifest, model, folder, cpu=None):
    out = folder / f"local{next(_counter)}.db"
    before = _own_cpu()
    summary = score_manifest(manifest, model, out, batch_size=32)
    if cpu is not None:
        cpu.append(_own_cpu() - before)
    return out, summary


def run_ray(manifest, model, folder, cluster, cpu=None):
    out = folder / f"ray{next(_counter)}"
    before = _own_cpu() + cluster.cpu_seconds()
    summary = score_manifest_ray(manifest, model, out, batch_size=32, address=cluster.address)
    if cpu is not None:  # the driver's and every cluster process's CPU time: the load does not inflate it
        cpu.append(_own_cpu() + cluster.cpu_seconds() - before)
    return out, summary


def _report(benchmark, name: str, n: int, cpu: list[float]) -> None:
    benchmark.extra_info["cpu_ms_per_item"] = round(1000 * cpu[0] / n, 2)
    print(f"\n{name}: {cpu[0]:.1f} CPU-seconds, {1000 * cpu[0] / n:.2f} CPU-ms per item")


def exported(results, folder):
    path = folder / f"export{next(_counter)}.parquet"
    export_store(results, path, format="parquet")
    return pq.read_table(path).sort_by(KEYS)


@pytest.mark.benchmark(group="score-engines-800x4")
def test_local_engine(benchmark, setup, cluster):
    manifest, model, folder, n = setup
    cpu: list[float] = []
    out, summary = benchmark.pedantic(run_local, (manifest, model, folder, cpu), rounds=1, iterations=1)
    assert summary.scored == n and not summary.failed
    _report(benchmark, "local engine", n, cpu)
    ray_out, _ = run_ray(manifest, model, folder, cluster)
    assert exported(out, folder).equals(exported(ray_out, folder))
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["images_per_second"] = round(n / benchmark.stats.stats.max, 1)


@pytest.mark.benchmark(group="score-engines-800x4")
def test_ray_engine(benchmark, setup, cluster):
    manifest, model, folder, n = setup
    cpu: list[float] = []
    out, summary = benchmark.pedantic(run_ray, (manifest, model, folder, cluster, cpu), rounds=1, iterations=1)
    assert summary.scored == n and not summary.failed
    _report(benchmark, "Ray engine", n, cpu)
    local_out, _ = run_local(manifest, model, folder)
    assert exported(out, folder).equals(exported(local_out, folder))
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["images_per_second"] = round(n / benchmark.stats.stats.max, 1)
