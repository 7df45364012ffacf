"""Noise schemes, the frozen-backbone head split, int8 re-quantization and the mitigation study."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from instab.cli.mitigation import add_mitigation_arguments, config_from_args, run_mitigation_cli
from instab.environments.registry import parse
from instab.studies.mitigation import (
    MitigationConfig,
    OverlapError,
    check_disjoint,
    measure,
    run_mitigation,
    split_labels,
)
from instab.studies.mitigation.noise import (
    DevicePairs,
    DistortionNoise,
    GaussianNoise,
    NoNoise,
    PairedImages,
    Subsample,
    draw_seed,
    make_scheme,
)
from instab.studies.result import StudyResult
from instab.train import Trainer, build_training_graph
from instab.train.dataset import load_labeled
from instab.train.head import FeatureRunner, join, split_model, train_head

STANDIN_DEVICES = ["jpeg:q=90", "webp:q=40", "contrast:factor=1.3+jpeg:q=50"]


def _images(n=6, h=9, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- noise schemes


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (2, 1, 3, 3), (3, 3, 1, 3), (4, 5, 7, 3)])
def test_gaussian_is_the_core_kernel_keyed_by_dataset_index(shape):
    import instab.environments.distort as D

    x = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    s = GaussianNoise(0.1)
    idx = np.arange(10, 10 + len(x))
    got = s.perturb(x, idx, seed=3, draw=1)
    want = np.asarray(D.gaussian_noise(x, 0.1, seed=draw_seed(3, 1), first_index=10))
    np.testing.assert_array_equal(got, want)
    # Any split of the batch, contiguous or not, gives the same x'.
    for part in (np.array([0]), np.arange(1, len(x))):
        if part.size:
            np.testing.assert_array_equal(s.perturb(x[part], idx[part], seed=3, draw=1), want[part])
    if len(x) > 2:
        odd = np.array([0, 2])
        np.testing.assert_array_equal(s.perturb(x[odd], idx[odd], seed=3, draw=1), want[odd])
    assert not np.array_equal(s.perturb(x, idx, seed=3, draw=2), want) or x.size < 4


def test_distortion_is_distort_phone():
    x = _images(4, 16, 16)
    s = DistortionNoise()
    got = s.perturb(x, np.arange(4), seed=0, draw=0)
    want = np.asarray(parse("distort:phone").apply(x, seed=draw_seed(0, 0)).images)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(s.perturb(x[2:], np.arange(2, 4), seed=0, draw=0), want[2:])
    assert s.describe() == "distortion"
    assert DistortionNoise("jpeg:q=50").describe() == "env:jpeg:q=50"


def test_paired_and_none():
    x, second = _images(5), _images(5, seed=9)
    p = PairedImages(second)
    np.testing.assert_array_equal(p.perturb(x[[1, 3]], np.array([1, 3])), second[[1, 3]])
    assert not p.random
    np.testing.assert_array_equal(NoNoise().perturb(x, np.arange(5)), x)
    with pytest.raises(ValueError, match="second"):
        PairedImages(second[..., :2]).perturb(x, np.arange(5))
    with pytest.raises(ValueError, match="index"):
        p.perturb(x[:2], np.array([4, 5]))


def test_subsample_draws_from_a_pool_of_n_photos_of_the_same_class():
    second = _images(40, 2, 2, seed=4)
    labels = np.repeat(np.arange(4), 10)
    labels[-3:] = 7  # a class with only three photos
    s = Subsample(second, labels, n=4, pool_seed=1)
    assert all(len(p) == (3 if c == 7 else 4) for c, p in s.pools.items())
    idx = np.arange(40)
    chosen = s.choose(idx, seed=0, draw=0)
    assert all(labels[c] == labels[i] for i, c in zip(idx, chosen, strict=True))
    assert all(c in s.pools[int(labels[i])] for i, c in zip(idx, chosen, strict=True))
    # Keyed per image: a part of the batch chooses the same photos.
    np.testing.assert_array_equal(s.choose(idx[5:9], seed=0, draw=0), chosen[5:9])
    np.testing.assert_array_equal(s.perturb(second, idx, 0, 0), second[chosen])
    assert not np.array_equal(s.choose(idx, seed=0, draw=1), chosen)
    # One photo per class: the scheme is the paired one.
    one = Subsample(second[:4], np.arange(4), n=10)
    np.testing.assert_array_equal(one.choose(np.arange(4)), np.arange(4))
    assert one.same_as_paired and not s.same_as_paired


def test_device_pairs_draw_two_different_devices_per_image():
    views = [_images(50, 3, 2, seed=d) for d in range(4)]
    s = make_scheme("devices", views=views)
    assert isinstance(s, DevicePairs) and s.describe() == "devices"
    idx = np.arange(50)
    a, b = s.choose(idx, seed=3, draw=0)
    assert (a != b).all() and set(a) | set(b) <= {0, 1, 2, 3}
    assert len(set(zip(a.tolist(), b.tolist(), strict=True))) > 6  # many of the 12 ordered pairs occur
    x, xn = s.pair(idx, seed=3, draw=0)
    np.testing.assert_array_equal(x, np.stack([views[d][i] for d, i in zip(a, idx, strict=True)]))
    np.testing.assert_array_equal(xn, np.stack([views[d][i] for d, i in zip(b, idx, strict=True)]))
    # Keyed per (seed, draw, image): any part of the batch gets the same pairs; another draw differs.
    np.testing.assert_array_equal(s.choose(idx[7:19], seed=3, draw=0)[1], b[7:19])
    np.testing.assert_array_equal(s.perturb(x[7:19], idx[7:19], 3, 0), xn[7:19])
    assert not np.array_equal(s.choose(idx, seed=3, draw=1)[0], a)
    with pytest.raises(ValueError, match="at least two devices"):
        DevicePairs(views[:1])
    with pytest.raises(ValueError, match=r"views\[1\]"):
        DevicePairs([views[0], views[1][:, :2]])
    with pytest.raises(ValueError, match="views"):
        make_scheme("devices")
    with pytest.raises(ValueError, match="dataset indices"):
        s.choose(np.array([50]))


def test_make_scheme_parses_and_rejects():
    second, labels = _images(3), np.arange(3)
    assert make_scheme("gaussian:sigma=0.2").sigma == 0.2
    assert isinstance(make_scheme("distortion"), DistortionNoise)
    assert isinstance(make_scheme("env:jpeg:q=50"), DistortionNoise)
    assert isinstance(make_scheme("two-images", second=second), PairedImages)
    assert make_scheme("subsample:n=3", second=second, labels=labels).n == 3
    assert isinstance(make_scheme("none"), NoNoise)
    with pytest.raises(ValueError, match="unknown scheme"):
        make_scheme("blur")
    with pytest.raises(ValueError, match="unknown parameter"):
        make_scheme("gaussian:s=1")
    with pytest.raises(ValueError, match="second device"):
        make_scheme("two-images")
    with pytest.raises(ValueError, match="labels"):
        make_scheme("subsample", second=second)
    with pytest.raises(ValueError, match="sigma"):
        make_scheme("gaussian:sigma=-1")
    with pytest.raises(ValueError, match="n must be"):
        make_scheme("subsample:n=x", second=second, labels=labels)
    with pytest.raises(ValueError, match="unknown option"):
        make_scheme("gaussian:0.05")
    assert make_scheme("env:distort:phone,strength=0.5").describe() == "env:distort:phone,strength=0.5"


# ---------------------------------------------------------------------------------------------- command line


def test_options_come_from_the_config_fields():
    """Every option's default is the config's; values parse into the config's types."""
    import argparse

    parser = argparse.ArgumentParser()
    add_mitigation_arguments(parser)
    assert config_from_args(parser.parse_args([])) == MitigationConfig()
    args = parser.parse_args(["--schemes", "gaussian;env:jpeg:q=50,chroma=420", "--losses", "kl", "--alphas-kl", "1,2",
                              "--sigmas", "0.1", "--no-raw", "--no-label-free", "--int8", "none", "--top-k", "5",
                              "--threads", "1", "--optimizer", "sgd"])
    cfg = config_from_args(args)
    assert cfg.schemes == ("gaussian", "env:jpeg:q=50,chroma=420") and cfg.losses == ("kl",)
    assert cfg.alphas == {"kl": (1.0, 2.0), "embedding": MitigationConfig().alphas["embedding"]}
    assert (cfg.sigmas, cfg.raw, cfg.label_free, cfg.int8, cfg.top_k, cfg.threads, cfg.optimizer) == (
        (0.1,), False, False, "none", 5, 1, "sgd")
    with pytest.raises(SystemExit):
        parser.parse_args(["--sigmas", "a,b"])


def test_module_entry_point_reports_missing_options(capsys):
    from instab.studies.mitigation.__main__ import main

    assert main([]) == 2
    assert "missing --images" in capsys.readouterr().err


def test_quantization_warnings_are_silenced_only_inside_the_block():
    """The filter drops only onnxruntime.quantization's records below ERROR, and leaves the root logger as it was."""
    import logging

    from instab.studies.mitigation.int8 import quiet_onnxruntime_quantization

    root = logging.getLogger()
    level, filters = root.level, list(root.filters)

    def record(path, level=logging.WARNING):
        return logging.LogRecord("root", level, path, 1, "msg", None, None)

    ort_file = "/x/site-packages/onnxruntime/quantization/quantize.py"
    with quiet_onnxruntime_quantization():
        assert not root.filter(record(ort_file))
        assert root.filter(record(ort_file, logging.ERROR))
        assert root.filter(record("/x/site-packages/other/module.py"))
    assert root.level == level and root.filters == filters
    assert root.filter(record(ort_file))


# ---------------------------------------------------------------------------------------------- head split


@pytest.fixture(scope="module")
def float_model(models_dir):
    from instab import models as M

    return M.dequantize(M.load(str(models_dir / "mobilenet_v2_1.0_224_int8_st.onnx")))


def test_split_and_join_reproduce_the_model(float_model):
    x = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    full = FeatureRunner(float_model.proto)(x)
    for trainable in ("last:1", "last:2", "embedding"):
        sp = split_model(float_model.proto, trainable)
        np.testing.assert_allclose(FeatureRunner(sp.head)(FeatureRunner(sp.backbone)(x)), full, rtol=0, atol=1e-6)
        np.testing.assert_allclose(FeatureRunner(join(sp, sp.head))(x), full, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="all"):
        split_model(float_model.proto, "all")


def test_head_step_equals_the_full_graph_step(float_model):
    """Training the head on backbone features is the same step as the full graph with the same trainable set."""
    sp = split_model(float_model.proto, "last:2")
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    xn = np.clip(x.astype(np.int16) + rng.integers(-20, 21, x.shape), 0, 255).astype(np.uint8)
    y = np.array([3, 907])
    bb = FeatureRunner(sp.backbone)
    for loss in ("kl", "embedding"):
        g_full = build_training_graph(float_model.proto, loss=loss, alpha=2.0, optimizer="adam",
                                      trainable="last:2" if loss == "kl" else "last:3")
        g_head = build_training_graph(sp.head, loss=loss, alpha=2.0, optimizer="adam", trainable="all")
        if loss == "embedding":
            # last:3 of the full graph = the inserted embedding layer + the head's two layers.
            assert set(g_full.params) == set(g_head.params)
        t_full, t_head = Trainer(g_full), Trainer(g_head)
        r_full = t_full.step(x, xn, y, 1e-3)
        r_head = t_head.step(bb(x), bb(xn), y, 1e-3)
        np.testing.assert_allclose([r_head.loss, r_head.ce, r_head.stability],
                                   [r_full.loss, r_full.ce, r_full.stability], rtol=1e-4, atol=1e-6)
        p_full, p_head = t_full.parameters(), t_head.parameters()
        assert set(p_full) == set(p_head)
        for k in p_full:
            np.testing.assert_allclose(p_head[k], p_full[k], rtol=1e-4, atol=1e-6)
        # The joined model is the full graph's export.
        joined = join(sp, t_head.export())
        np.testing.assert_allclose(FeatureRunner(joined)(x), FeatureRunner(t_full.export())(x), rtol=0, atol=1e-5)


def test_split_refuses_a_cut_through_a_residual():
    # a = conv1(x); y = relu(a); z = conv2(y) + a: the skip reads a, which is before the cut at y
    w1 = np.ones((2, 2, 1, 1), np.float32)
    w2 = np.ones((2, 2, 1, 1), np.float32)
    wm = np.ones((2, 3), np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
        helper.make_node("Conv", ["y", "w2"], ["b"]),
        helper.make_node("Add", ["b", "a"], ["z"]),
        helper.make_node("GlobalAveragePool", ["z"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "wm"], ["out"]),
    ]
    g = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(wm, "wm")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    with pytest.raises(ValueError, match="residual"):
        split_model(m, "last:2")
    sp = split_model(m, "last:1")  # after the Add: a clean cut
    x = np.random.default_rng(0).random((1, 2, 3, 3), np.float32)
    np.testing.assert_allclose(FeatureRunner(join(sp, sp.head))(x), FeatureRunner(m)(x), rtol=1e-6)


# ----------------------------------------------------------------------------------------- training lowers instability


def test_stability_training_lowers_instability_on_its_training_images(float_model, samples_dir):
    """Seeded: KL stability training on two devices' views of 48 images makes them agree more often."""
    data = load_labeled(samples_dir, samples_dir / "labels.csv", 224, limit=48)
    a = np.asarray(parse("jpeg:q=90").apply(data.images).images)
    b = np.asarray(parse("contrast:factor=1.4+saturation:factor=0.6+jpeg:q=40").apply(data.images).images)
    sp = split_model(float_model.proto, "last:2")
    bb = FeatureRunner(sp.backbone)
    fa, fb = bb(a), bb(b)
    y = data.first_labels

    def instab(head):
        run = FeatureRunner(head)
        ranked = np.stack([np.argsort(-run(f), axis=1)[:, :5] for f in (fa, fb)], axis=1)
        return measure(ranked, data.labels)["instability"]

    before = instab(sp.head)
    assert before > 0  # the two views disagree on some images
    trainer = Trainer(build_training_graph(sp.head, loss="kl", alpha=10.0, optimizer="adam", trainable="all"))
    hist = train_head(trainer, fa, y, [fb], epochs=6, batch_size=16, lr=1e-4, seed=0)
    after = instab(trainer.export())
    assert after < before
    assert hist[-1]["stability"] < hist[0]["stability"]


# ---------------------------------------------------------------------------------------------- int8


def test_quantize_int8_gives_a_qdq_model_close_to_the_float_one(float_model, samples_dir):
    from instab.inference.classifier import Classifier
    from instab.train.quantize import quantize_int8

    data = load_labeled(samples_dir, samples_dir / "labels.csv", 224, limit=24)
    q = quantize_int8(float_model, data.images[:8])
    ops = {n.op_type for n in q.proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    pf = Classifier(float_model).predict(data.images[8:], k=1).classes[:, 0]
    pq = Classifier(q).predict(data.images[8:], k=1).classes[:, 0]
    assert (pf == pq).mean() >= 0.75
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(float_model, data.images[:2, :100])
    with pytest.raises(ValueError, match="method"):
        quantize_int8(float_model, data.images[:2], method="magic")


# ---------------------------------------------------------------------------------------------- the study


@pytest.fixture(scope="module")
def split_csvs(samples_dir, tmp_path_factory):
    return split_labels(samples_dir / "labels.csv", tmp_path_factory.mktemp("split"), 20, 16, seed=0)


def test_split_labels_is_disjoint_and_seeded(split_csvs, samples_dir, tmp_path):
    tr, ev = split_csvs
    files = [[r["file"] for r in csv.DictReader(open(p))] for p in (tr, ev)]
    assert len(files[0]) == 20 and len(files[1]) == 16 and not set(files[0]) & set(files[1])
    tr2, _ = split_labels(samples_dir / "labels.csv", tmp_path, 20, 16, seed=0)
    assert tr2.read_text() == tr.read_text()
    with pytest.raises(ValueError, match="n_train"):
        split_labels(samples_dir / "labels.csv", tmp_path, 900, 1)


def test_overlap_is_refused(split_csvs, samples_dir, tmp_path):
    tr, _ = split_csvs
    with pytest.raises(OverlapError, match="overlap"):
        run_mitigation(samples_dir, tr, samples_dir, tr, devices=STANDIN_DEVICES, log=None)
    # A copy under another name is the same image.
    first = next(csv.DictReader(open(tr)))["file"]
    shutil.copy(first, tmp_path / "copy.jpg")
    with pytest.raises(OverlapError, match="same bytes"):
        from pathlib import Path

        check_disjoint([Path(first)], [tmp_path / "copy.jpg"])


def test_characterize_mitigation_refuses_overlap(split_csvs, samples_dir, tmp_path, capsys):
    """Through the real ``instab characterize`` parser: the options coexist and overlap is refused."""
    from instab.cli.main import build_parser, main

    tr, _ = split_csvs
    argv = ["characterize", "--experiment", "mitigation", "--images", str(samples_dir), "--labels", str(tr),
            "--eval-images", str(samples_dir), "--eval-labels", str(tr), "--out", str(tmp_path),
            "--devices", ",".join(STANDIN_DEVICES[:2]), "--model", "mobilenet-v2-int8-st", "--quiet"]
    assert build_parser().parse_args(argv).model == ["mobilenet-v2-int8-st"]
    assert main(argv) == 2
    assert "overlap" in capsys.readouterr().err
    args = build_parser().parse_args(argv)
    args.model = ["a", "b"]
    assert run_mitigation_cli(args) == 2
    assert "one start model" in capsys.readouterr().err


def test_run_mitigation_writes_the_table(split_csvs, samples_dir, tmp_path, models_dir):
    tr, ev = split_csvs
    cfg = MitigationConfig(epochs=1, batch_size=8, schemes=("gaussian", "two-images"), alphas={"kl": (1.0, 3.0),
                           "embedding": (0.01,)}, sigmas=(0.05,), int8="none", draws=1)
    res = run_mitigation(samples_dir, tr, samples_dir, ev, model=str(models_dir / "mobilenet_v2_1.0_224_int8_st.onnx"),
                         out=tmp_path, devices=STANDIN_DEVICES, config=cfg, log=None)
    assert isinstance(res, StudyResult) and res.to_text().splitlines()[1].startswith("baseline")
    doc = json.loads((tmp_path / "mitigation.json").read_text())
    rows = doc["rows"]
    assert [r["method"] for r in rows].count("baseline") == 1
    for r in rows:
        assert {"method", "loss", "noise", "alpha", "accuracy", "instability"} <= set(r)
        assert 0 <= r["instability"] <= 1 and 0 <= r["accuracy"] <= 1
    methods = {r["method"] for r in rows}
    assert {"fine-tune", "stability", "stability (label-free)", "top-3", "top-3 + stability"} <= methods
    assert {(r["loss"], r["noise"]) for r in rows if r["method"] == "stability"} == {
        ("kl", "gaussian"), ("embedding", "gaussian"), ("kl", "two-images"), ("embedding", "two-images")}
    # The KL search ran on the validation split (two alphas per scheme); embedding had a single candidate.
    assert {(s["loss"], s["alpha"]) for s in doc["search"]} == {("kl", 1.0), ("kl", 3.0)}
    assert doc["meta"]["n_val"] == 4 and doc["meta"]["n_eval"] == 16
    assert (tmp_path / "mitigation.csv").read_text().startswith("method,loss,noise")
    assert "<table>" in (tmp_path / "mitigation.html").read_text()
    base = rows[0]
    assert res.meta["baseline_instability"] == base["instability"]
    top3 = next(r for r in rows if r["method"] == "top-3")
    assert top3["accuracy"] >= base["accuracy"]


def test_virtual_devices_and_the_raw_pipeline_rows(split_csvs, samples_dir):
    tr, ev = split_csvs
    cfg = MitigationConfig(epochs=1, batch_size=8, losses=("kl",), schemes=("two-images",), alphas={"kl": (1.0,)},
                           int8="none", label_free=False, val_fraction=0.0)
    devices = ["device:phone-mid", "device:phone-budget", "device:phone-vivid"]
    res = run_mitigation(
        samples_dir, tr, samples_dir, ev, devices=devices, config=cfg, limit=12, eval_limit=8, log=None
    )
    by = {r["method"]: r for r in res.rows}
    assert {"baseline", "stability", "raw pipeline", "raw pipeline + stability"} <= set(by)
    assert len(by["raw pipeline"]["accuracy_per_device"]) == 3
    assert res.meta["train_device"] == "device:phone-mid" and res.meta["second_device"] == "device:phone-budget"
    # Provenance: the start model keyed by its content hash, as the results store keys it.
    from instab.io.store import model_hash
    from instab.studies.mitigation import DEFAULT_MODEL, as_float_model

    start = as_float_model(DEFAULT_MODEL)
    assert res.meta["provenance"]["models"] == {start.name: model_hash(start)}
    assert res.meta["provenance"]["seeds"] == {"seed": 0}
    # A device with repeat shots is not a plain profile: no raw rows, and no error.
    res2 = run_mitigation(samples_dir, tr, samples_dir, ev, devices=devices[:2] + ["device:phone-mid,shot=1"],
                          config=cfg, limit=12, eval_limit=8, log=None)
    assert "raw pipeline" not in {r["method"] for r in res2.rows}


def test_trainer_reset_restores_the_start_weights(float_model):
    """The study reuses one Trainer per (loss, alpha): reset() must bring back the start weights and a fresh state."""
    sp = split_model(float_model.proto, "last:1")
    g = build_training_graph(sp.head, loss="kl", alpha=1.0, optimizer="adam", trainable="all")
    start = {k: v.copy() for k, v in g.initial.items()}
    t = Trainer(g)
    f = np.random.default_rng(0).random((4, 1280), np.float32)
    for _ in range(2):
        t.step(f, f * 0.9, np.arange(4), 1e-3)
    assert any(not np.array_equal(t.parameters()[k], start[k]) for k in start)
    for k in start:  # training never writes into the graph's own copy of the start weights
        np.testing.assert_array_equal(g.initial[k], start[k])
    t.reset()
    for k in start:
        np.testing.assert_array_equal(t.parameters()[k], start[k])
    assert all(not v.any() for v in t.optimizer_state().values())


def test_whole_network_training_and_subsample_reuse(split_csvs, samples_dir, tmp_path):
    """trainable="all" trains every layer on the images themselves; the saved model is what was measured.

    One photo per class makes subsample identical to two-images: its row is the two-images result, marked so.
    """
    from instab import models as M
    from instab.studies.mitigation import FineTuner, Views

    tr, ev = split_csvs
    cfg = MitigationConfig(trainable="all", epochs=1, batch_size=8, losses=("kl",),
                           schemes=("two-images", "subsample:n=10", "devices"), alphas={"kl": (3.0,)}, int8="best",
                           label_free=False, val_fraction=0.0, raw=False, calibration=8)
    res = run_mitigation(samples_dir, tr, samples_dir, ev, devices=STANDIN_DEVICES, config=cfg, limit=8,
                         eval_limit=8, out=tmp_path, log=None)
    rows = {(r["method"], r["noise"]): r for r in res.rows}
    paired, sub = rows[("stability", "two-images")], rows[("stability", "subsample")]
    assert sub["same_as"] == "two-images"
    assert (sub["accuracy"], sub["instability"], sub["alpha"]) == (paired["accuracy"], paired["instability"],
                                                                    paired["alpha"])
    assert res.meta["cut"] is None and res.meta["backbone_images"] == 0
    assert rows[("stability", "devices")]["scheme"] == "devices"
    # Every layer moved: the saved float model differs from the start model in its first convolution too.
    saved = M.load(res.meta["saved_models"]["kl-two-images"], M.load("mobilenet-v2-int8-st").spec)
    start = M.dequantize(M.load("mobilenet-v2-int8-st"))
    first = start.proto.graph.node[[n.op_type for n in start.proto.graph.node].index("Conv")].input[1]
    w0 = {i.name: onnx.numpy_helper.to_array(i) for i in start.proto.graph.initializer}[first]
    w1 = {i.name: onnx.numpy_helper.to_array(i) for i in saved.proto.graph.initializer}[first]
    assert not np.array_equal(w0, w1)
    # and it gives the row's numbers on the evaluation views
    evals = load_labeled(samples_dir, ev, 224, 0.875, 8)
    views = Views(STANDIN_DEVICES, [np.asarray(parse(e).apply(evals.images, seed=0).images) for e in STANDIN_DEVICES],
                  [np.ones(8, bool)] * 3)
    m = FineTuner(start, cfg, 0).measure_model(saved, views, evals.labels)
    assert (m["accuracy"], m["instability"]) == (paired["accuracy"], paired["instability"])


def test_train_head_takes_draws_of_x():
    """Epoch e trains on draw e % len of x (as of x'): two equal draws are the single array; a mismatch is named."""
    from tests._support.training import tiny_classifier, tiny_data

    images, labels = tiny_data(12)
    shifted = np.clip(images.astype(np.int16) + 9, 0, 255).astype(np.uint8)
    results = []
    for feats in (images, [images, images], [images, shifted]):
        t = Trainer(build_training_graph(tiny_classifier(), loss="kl", alpha=1.0, optimizer="adam"), threads=1)
        train_head(t, feats, labels, [shifted], epochs=2, batch_size=4, lr=1e-2, seed=0)
        results.append(t.parameters())
    same, other = results[1], results[2]
    for k in results[0]:
        np.testing.assert_array_equal(same[k], results[0][k])
    assert any(not np.array_equal(other[k], results[0][k]) for k in other)
    t = Trainer(build_training_graph(tiny_classifier(), loss="kl", alpha=1.0, optimizer="adam"), threads=1)
    with pytest.raises(ValueError, match="a draw shaped"):
        train_head(t, [images, images[:, :6]], labels, [shifted])
