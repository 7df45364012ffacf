"""Bulk scoring throughput: ``instab score`` (decode, preprocess, infer, store) vs the classifier's predict ceiling.

Full size: the 800 shared images x 4 environments (3200 manifest rows). The
four environment columns point at the same JPEG files, so both sides do the
same decoding and inference work; the score side also validates the manifest
and commits every batch to SQLite. Under --benchmark-disable: 16 images x 4.
"""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest

from instab import Classifier, models
from instab.workflow.score import score_manifest
from instab.io.store import ResultStore

ENVS = ("device-a", "device-b", "device-c", "device-d")
MODEL = "mobilenet_v2_1.0_224_int8_st.onnx"


@pytest.fixture(scope="module")
def setup(request, samples_dir, models_dir, tmp_path_factory):
    full = not request.config.getoption("benchmark_disable")
    rows = list(csv.DictReader((samples_dir / "labels.csv").open()))[: 800 if full else 16]
    folder = tmp_path_factory.mktemp("score")
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "environment", "path", "labels"])
        for r, env in itertools.product(rows, ENVS):
            w.writerow([r["file"], env, samples_dir / r["file"], r["class_index"]])
    paths = [str(samples_dir / r["file"]) for r, _ in itertools.product(rows, ENVS)]
    model = models.load(models_dir / MODEL)
    return model, manifest, paths, folder


@pytest.mark.benchmark(group="score-800x4")
def test_predict_ceiling(benchmark, setup):
    model, _, paths, _ = setup
    clf = Classifier(model, batch_size=32)
    pred = benchmark.pedantic(clf.predict, (paths,), {"k": 5}, rounds=1, iterations=1)
    assert all(e is None for e in pred.errors)


@pytest.mark.benchmark(group="score-800x4")
def test_score(benchmark, setup):
    model, manifest, paths, folder = setup
    counter = itertools.count()

    def run():
        db = folder / f"r{next(counter)}.db"
        return db, score_manifest(manifest, model, db, batch_size=32, progress=None)

    db, summary = benchmark.pedantic(run, rounds=1, iterations=1)
    assert summary.scored == len(paths) and not summary.failed
    # the stored top-1 equals predict's
    with ResultStore(db) as store:
        scored = store.load()
    ref = Classifier(model).predict(paths[:: len(ENVS)], k=5)
    np.testing.assert_array_equal(scored.ranked[:, 0, 0], ref.classes[:, 0])
