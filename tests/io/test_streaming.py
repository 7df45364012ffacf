"""The streamed instability metric of a store or dataset: the in-memory metric's numbers, whatever the buckets."""

from __future__ import annotations

import numpy as np
import pytest

import instab
from instab.io.dataset import ResultDataset
from instab.io.store import ResultStore
from instab.io.streaming import image_hash, streamed_instability
from instab.workflow.report_analysis import first_shots
from tests._support.results import H2, random_rows, write_dataset, write_store

pa = pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streaming")
    rows = random_rows(7, n_images=200, envs=("jpeg:q=85", "device:phone-mid", "webp"), repeats=2)
    rows += random_rows(8, n_images=10, identity=H2, name="m2")
    write_store(folder / "r.db", rows)
    write_dataset(folder / "ds", rows, unit_rows=50).close()
    return folder


@pytest.mark.parametrize("source", ["r.db", "ds"])
@pytest.mark.parametrize(("bucket_rows", "batch_rows"), [(10**6, 65536), (100, 33), (1, 7)])
@pytest.mark.parametrize("k", [1, 3])
def test_equals_the_in_memory_metric(results, source, bucket_rows, batch_rows, k):
    with ResultStore(results / "r.db", readonly=True) as store:
        scored = store.load("m1")
    whole = instab.instability(scored.ranked, scored.labels, k=k)
    got = streamed_instability(results / source, "m1", k=k, bucket_rows=bucket_rows, batch_rows=batch_rows)
    m = got.metric
    assert (m.n_unstable, m.n_images, m.n_always_correct, m.n_always_wrong) == (
        whole.n_unstable, whole.n_images, whole.n_always_correct, whole.n_always_wrong)
    assert m.rate == whole.rate and m.n_seen == len(scored.image_ids)
    assert got.columns == scored.columns  # in order of first appearance, as load() orders them
    np.testing.assert_array_equal(m.accuracy, whole.accuracy)
    assert got.rows == sum(1 for _ in scored.rows()) and got.errors == len(scored.errors)
    assert got.buckets == (1 if bucket_rows >= got.rows else -(-got.rows // bucket_rows))
    summary = got.to_dict()["instability"][f"top{k}"]
    assert summary["rate"] == whole.rate and summary["rate_ci95"] == list(whole.interval())
    assert [e["accuracy"] for e in summary["environments"]] == whole.accuracy.tolist()


def test_several_k_in_one_pass(results):
    got = streamed_instability(results / "ds", "m1", k=(1, 3, 6), bucket_rows=300)
    assert list(got.metrics) == [1, 3] and got.width == 5  # k=6: more than the 5 classes stored
    for k in (1, 3):
        alone = streamed_instability(results / "ds", "m1", k=k).metric
        assert (got.metrics[k].n_unstable, got.metrics[k].n_images) == (alone.n_unstable, alone.n_images)
    assert got.metric is got.metrics[1]


@pytest.mark.parametrize("source", ["r.db", "ds"])
def test_first_shots_is_the_report_headline(results, source):
    with ResultStore(results / "r.db", readonly=True) as store:
        scored = store.load("m1")
    columns = first_shots(scored)
    whole = instab.instability(scored.ranked[:, columns], scored.labels, k=3)
    got = streamed_instability(results / source, "m1", k=3, first_shots=True, bucket_rows=200)
    assert got.columns == [scored.columns[j] for j in columns] == [(e, 0) for e in ("jpeg:q=85", "device:phone-mid",
                                                                                     "webp")]
    assert (got.metric.n_unstable, got.metric.n_images, got.metric.rate) == (whole.n_unstable, whole.n_images,
                                                                             whole.rate)
    np.testing.assert_array_equal(got.metric.accuracy, whole.accuracy)
    assert got.to_dict()["headline"] == "across devices, first shot of each" and got.columns_read == 6


def test_models_and_k_are_checked(results):
    small = streamed_instability(results / "ds", H2[:10])
    assert small.model == "m2" and small.metric.n_seen == 10
    with pytest.raises(ValueError, match="several models"):
        streamed_instability(results / "ds")
    with pytest.raises(ValueError, match=r"k: must be in 1\.\.5"):
        streamed_instability(results / "r.db", "m1", k=6)
    with pytest.raises(ValueError, match="k: expected a positive int"):
        streamed_instability(results / "r.db", "m1", k=(1, 0))
    with pytest.raises(ValueError, match="bucket_rows: expected a positive int"):
        streamed_instability(results / "r.db", "m1", bucket_rows=0)


def test_spill_files_are_removed(results, tmp_path):
    streamed_instability(results / "ds", "m1", bucket_rows=50, tmp_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_image_hash_is_the_same_in_any_batch():
    ids = pa.array(["", "a", "img1", "img10", "émoji", "x" * 500, "a", "img1"])
    whole = image_hash(ids)
    assert whole[1] == whole[6] and whole[2] == whole[7] and len(set(whole[:6].tolist())) == 6
    for lo, hi in [(0, 1), (1, 8), (3, 5), (0, 0)]:
        np.testing.assert_array_equal(image_hash(ids.slice(lo, hi - lo)), whole[lo:hi])
    np.testing.assert_array_equal(image_hash(pa.chunked_array([ids[:3], ids[3:]])), whole)
    ids = pa.array([f"n{i:08d}.JPEG" for i in range(20_000)])
    counts = np.bincount((image_hash(ids) % np.uint64(16)).astype(np.int64), minlength=16)
    assert counts.min() > 1000  # spread evenly enough to bound every bucket


def test_empty_dataset(tmp_path):
    with ResultDataset(tmp_path / "ds", create=True):
        pass
    with pytest.raises(ValueError, match="holds no results"):
        streamed_instability(tmp_path / "ds")
