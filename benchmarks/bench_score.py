"""Bulk scoring throughput: ``instab score`` (decode, preprocess, infer, store) vs the classifier's predict ceiling.

Full size: the 800 shared images x 4 environments (3200 manifest rows). The
four environment columns point at the same JPEG files, so both sides do the
same decoding and inference work; the score side also validates the manifest
and commits every batch to SQLite. Under --benchmark-disable: 16 images x 4.
Each row is checked against the other's output, computed untimed in the same test:
predict's top-5 equals the top-5 that ``score`` stored, row for row, and the other way.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from instab import Classifier, models
from instab.io.store import ResultStore
from instab.workflow.score import score_manifest
from tests._support.manifests import sample_manifest

ENVS = ("device-a", "device-b", "device-c", "device-d")
MODEL = "mobilenet_v2_1.0_224_int8_st.onnx"


@pytest.fixture(scope="module")
def setup(request, samples_dir, models_dir, tmp_path_factory):
    full = not request.config.getoption("benchmark_disable")
    folder = tmp_path_factory.mktemp("score")
    manifest, rows = sample_manifest(samples_dir, folder, 800 if full else 16, ENVS)
    paths = [str(samples_dir / r["file"]) for r, _ in itertools.product(rows, ENVS)]
    model = models.load(models_dir / MODEL)
    return model, manifest, paths, folder


_counter = itertools.count()


def run_score(model, manifest, folder):
    db = folder / f"r{next(_counter)}.db"
    return db, score_manifest(manifest, model, db, batch_size=32, progress=None)


def stored_top5(db) -> np.ndarray:
    """[images * environments, 5] in the manifest's row order (image-major, as ``paths``)."""
    with ResultStore(db) as store:
        scored = store.load()
    assert list(scored.environments) == list(ENVS)
    return scored.ranked[:, :, :5].reshape(-1, 5)


@pytest.mark.benchmark(group="score-800x4")
def test_predict_ceiling(benchmark, setup):
    model, manifest, paths, folder = setup
    clf = Classifier(model, batch_size=32)
    pred = benchmark.pedantic(clf.predict, (paths,), {"k": 5}, rounds=1, iterations=1)
    assert all(e is None for e in pred.errors)
    db, _ = run_score(model, manifest, folder)
    np.testing.assert_array_equal(pred.classes, stored_top5(db))


@pytest.mark.benchmark(group="score-800x4")
def test_score(benchmark, setup):
    model, manifest, paths, folder = setup
    db, summary = benchmark.pedantic(run_score, (model, manifest, folder), rounds=1, iterations=1)
    assert summary.scored == len(paths) and not summary.failed
    ref = Classifier(model, batch_size=32).predict(paths, k=5)
    np.testing.assert_array_equal(stored_top5(db), ref.classes)
