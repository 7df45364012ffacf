"""``instab mitigate``: the per-class split, the tuning pieces, the whole command on a few images, bad input."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from instab.cli.main import main
from instab.environments.registry import parse
from instab.studies.mitigate import MitigateOptions
from instab.studies.mitigate.split import split_per_class
from instab.studies.mitigate.tuning import Pairs, fit_plain, fit_stable, soft_targets
from instab.studies.mitigation import FineTuner, MitigationConfig, measure
from instab.train.dataset import load_labeled

# Cheap stand-ins for two phones (the built-in and held-out devices still run in the evaluation).
DEVICE, PAIR = "jpeg:q=90", "contrast:factor=1.4+saturation:factor=0.6+jpeg:q=40"

# ---------------------------------------------------------------------------------------------- the split


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60), st.sampled_from([0.0, 0.1, 0.25]),
       st.sampled_from([0.0, 0.2, 0.3, 0.5]), st.integers(0, 2**32 - 1))
def test_split_is_a_disjoint_per_class_partition(labels, val, ev, seed):
    labels = np.asarray(labels)
    try:
        s = split_per_class(labels, val, ev, seed)
    except ValueError as exc:
        assert "no " in str(exc)  # a part asked for came out empty: too few images
        return
    every = np.concatenate([s.train, s.val, s.eval])
    assert sorted(every.tolist()) == list(range(len(labels)))
    for c in np.unique(labels):
        n = int((labels == c).sum())
        assert (labels[s.train] == c).sum() >= 1  # every class trains
        assert (labels[s.eval] == c).sum() == min(round(n * ev), n - 1)
    again = split_per_class(labels, val, ev, seed)
    parts = zip((s.train, s.val, s.eval), (again.train, again.val, again.eval), strict=True)
    assert all(np.array_equal(a, b) for a, b in parts)


def test_split_of_one_class_does_not_move_when_another_grows():
    a = split_per_class([0] * 20 + [1] * 20, 0.1, 0.3, seed=4)
    b = split_per_class([0] * 20 + [1] * 30, 0.1, 0.3, seed=4)
    assert np.array_equal(a.eval[a.eval < 20], b.eval[b.eval < 20])


@pytest.mark.parametrize("kwargs, match", [
    ({"val_fraction": 0.6, "eval_fraction": 0.5}, "leave images"),
    ({"val_fraction": -0.1, "eval_fraction": 0.3}, "val_fraction"),
    ({"val_fraction": 0.1, "eval_fraction": 1.0}, "eval_fraction"),
])
def test_split_refuses_bad_fractions(kwargs, match):
    with pytest.raises(ValueError, match=match):
        split_per_class([0, 0, 1, 1], seed=0, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "l2"}, "loss"), ({"noise": "blur"}, "noise"), ({"alpha": -1.0}, "alpha"), ({"epochs": 0}, "epochs"),
    ({"distill": 1.5}, "distill"), ({"trainable": "first:2"}, "trainable"), ({"lr": float("nan")}, "lr"),
    ({"device": ""}, "device"), ({"threads": 0}, "threads"),
])
def test_options_name_the_bad_knob(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MitigateOptions(**kwargs)


def test_a_bare_profile_name_is_a_device():
    o = MitigateOptions(device="phone-mid", pair_device="jpeg:q=50")
    assert (o.device, o.pair_device) == ("device:phone-mid", "jpeg:q=50")


# ---------------------------------------------------------------------------------------------- tuning


@pytest.fixture(scope="module")
def float_model(models_dir):
    from instab import models as M

    return M.dequantize(M.load(str(models_dir / "mobilenet_v2_1.0_224_int8_st.onnx")))


def test_stability_fine_tune_lowers_instability_on_its_training_images(float_model, imagenette_dir, tmp_path):
    """Seeded: the stabilized head agrees across the two views of its 60 training images more often than the
    input model and than the plain fine-tune of the same schedule."""
    with open(imagenette_dir / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    classes = sorted({r["class_index"] for r in rows})[:5]
    _write_csv(tmp_path / "five.csv", [r for c in classes for r in [r for r in rows if r["class_index"] == c][:12]])
    data = load_labeled(imagenette_dir, tmp_path / "five.csv", 224)
    images, labels = data.images, data.first_labels
    a = np.asarray(parse(DEVICE).apply(images).images)
    b = np.asarray(parse(PAIR).apply(images).images)
    tuner = FineTuner(float_model, MitigationConfig(trainable="last:2", epochs=6, batch_size=16, lr=1e-4), seed=0)
    fa, fb = tuner.features(a), tuner.features(b)
    pairs = Pairs(fa, [fb], soft_targets(tuner, fa, labels, distill=0.5))
    assert np.allclose(pairs.targets.sum(axis=1), 1.0, atol=1e-5)

    def instability(head):
        run = tuner.predict
        from instab.studies.mitigation.views import Views

        ranked = run(head, Views(["a", "b"], [a, b], [np.ones(len(a), bool)] * 2, [fa, fb]))
        return measure(ranked, [[int(c)] for c in labels])["instability"]

    before = instability(tuner.head0)
    plain = instability(fit_plain(tuner, pairs))
    stable = instability(fit_stable(tuner, "kl", 10.0, pairs))
    assert before > 0
    assert stable < before and stable < plain


# ---------------------------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def small_set(imagenette_dir, samples_dir, tmp_path_factory):
    """A labels CSV of 8 photos of each of 3 imagenette classes, and 40 retention photos."""
    folder = tmp_path_factory.mktemp("mitigate")
    with open(imagenette_dir / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_class: dict[str, list[dict]] = {}
    for r in rows:
        by_class.setdefault(r["class_index"], []).append(r)
    chosen = [r for c in list(by_class)[:3] for r in by_class[c][:8]]
    _write_csv(folder / "labels.csv", chosen)
    with open(samples_dir / "labels.csv", newline="") as fh:
        _write_csv(folder / "retain.csv", list(csv.DictReader(fh))[:40])
    return folder


def _write_csv(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _args(small_set, imagenette_dir, out, *extra):
    return ["mitigate", "--model", "mobilenet-v2-int8-st", "--images", str(imagenette_dir),
            "--labels", str(small_set / "labels.csv"), "--device", DEVICE, "--pair-device", PAIR,
            "--trainable", "last:2", "--epochs", "2", "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def mitigated(small_set, imagenette_dir, samples_dir, models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv("INSTAB_MODELS_DIR", str(models_dir))
    code = main(_args(small_set, imagenette_dir, out, "--alphas", "1,3", "--retain-images", str(samples_dir),
                      "--retain-labels", str(small_set / "retain.csv")))
    mp.undo()
    return code, out


def test_mitigate_writes_a_drop_in_model_its_int8_copy_and_a_report(mitigated, models_dir):
    from instab import models as M
    from instab.inference.classifier import Classifier

    code, out = mitigated
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"model.onnx", "model_int8.onnx", "plain.onnx", "mitigation.json",
                                              "report.html"}
    original = onnx.load(str(models_dir / "mobilenet_v2_1.0_224_int8_st.onnx"))
    for name in ("model.onnx", "model_int8.onnx"):
        tuned = onnx.load(str(out / name))
        for a, b in ((original.graph.input, tuned.graph.input), (original.graph.output, tuned.graph.output)):
            assert [(v.name, v.type.SerializeToString()) for v in a] == [(v.name, v.type.SerializeToString())
                                                                         for v in b]
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out / "model_int8.onnx")).graph.node)
    pred = Classifier(M.load(str(out / "model.onnx"))).predict(np.zeros((2, 224, 224, 3), np.uint8), k=1)
    assert pred.classes.shape == (2, 1)

    data = json.loads((out / "mitigation.json").read_text())
    assert set(data["rows"]) == {"input", "plain", "stable"} and set(data["int8_rows"]) == {"input", "stable"}
    assert data["meta"]["alpha"] in (1.0, 3.0) and len(data["meta"]["alpha_search"]) == 4  # input, plain, 2 alphas
    assert data["meta"]["split"]["eval"] >= 3
    assert data["meta"]["n_retention"] + data["meta"]["n_retention_guard"] > 30
    row = data["rows"]["input"]
    assert set(row["instability"]) == {"two_devices", "built_in", "held_out", "all"}
    assert len(row["accuracy"]) == 2 + 5 + 2
    assert "device:phone-night" in row["accuracy"] and 0 <= row["retention_accuracy"] <= 1
    for key in ("two_devices_reduction_vs_input", "two_devices_reduction_vs_plain", "retention_change"):
        assert key in data["summary"]
    page = (out / "report.html").read_text()
    assert "stability fine-tune, int8" in page and "held-out" in page
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.")]  # no temporary folder left


def test_input_row_is_the_start_model_measured_independently(mitigated, small_set, imagenette_dir, models_dir):
    """The input row's first-device accuracy equals ONNX Runtime running the float copy on the same views."""
    import onnxruntime as ort

    from instab import models as M

    _, out = mitigated
    data = json.loads((out / "mitigation.json").read_text())
    labelled = load_labeled(imagenette_dir, small_set / "labels.csv", 224)
    s = split_per_class(labelled.first_labels, 0.1, 0.3, 0)
    views = np.asarray(parse(DEVICE).apply(labelled.images, seed=0).images)[s.eval]
    model = M.dequantize(M.load(str(models_dir / "mobilenet_v2_1.0_224_int8_st.onnx")))
    sess = ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    top1 = sess.run(None, {sess.get_inputs()[0].name: views})[0].argmax(axis=1)
    want = float(np.mean(top1 == labelled.first_labels[s.eval]))
    assert data["rows"]["input"]["accuracy"][DEVICE] == pytest.approx(want)


# ---------------------------------------------------------------------------------------------- bad input


def _untrainable_model(path):
    """A float NHWC uint8 classifier whose path to the output goes through an operator without a gradient rule."""
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [None, 8, 8, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 4], np.ones(12, np.float32).tolist())
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["xf"], ["m"], axes=[1, 2], keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["h"]),
             helper.make_node("Erf", ["h"], ["z"]),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))


def test_bad_input_fails_cleanly_with_exit_2(small_set, imagenette_dir, tmp_path, models_dir, monkeypatch, capsys):
    monkeypatch.setenv("INSTAB_MODELS_DIR", str(models_dir))
    cases = []
    exists = tmp_path / "exists"
    exists.mkdir()
    cases.append((_args(small_set, imagenette_dir, exists), "already exists"))
    rows = list(csv.DictReader(open(small_set / "labels.csv", newline="")))
    rows[0]["class_index"] = "1500"
    _write_csv(tmp_path / "bad.csv", rows)
    args = _args(small_set, imagenette_dir, tmp_path / "o1")
    args[args.index("--labels") + 1] = str(tmp_path / "bad.csv")
    cases.append((args, "outside the model's 1000 classes"))
    pairs = tmp_path / "pairs"
    for r in list(csv.DictReader(open(small_set / "labels.csv", newline="")))[:3]:
        (pairs / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(imagenette_dir / r["file"], pairs / r["file"])
    cases.append((_args(small_set, imagenette_dir, tmp_path / "o2", "--pair-images", str(pairs)), "no partner"))
    dup_rows = list(csv.DictReader(open(small_set / "labels.csv", newline="")))
    _write_csv(tmp_path / "dup.csv", dup_rows + dup_rows)  # every photo twice: a copy lands in the evaluation part
    args = _args(small_set, imagenette_dir, tmp_path / "o3")
    args[args.index("--labels") + 1] = str(tmp_path / "dup.csv")
    cases.append((args, "overlap"))
    _untrainable_model(tmp_path / "erf.onnx")
    args = _args(small_set, imagenette_dir, tmp_path / "o4")
    args[args.index("--model") + 1] = str(tmp_path / "erf.onnx")
    cases.append((args, "Erf"))
    for args, match in cases:
        assert main(args) == 2, match
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir() if p.is_dir() and p.name != "exists")


class _FakeTuner:
    """Stands in for FineTuner in choose_alpha: a "head" is the text of how it was trained."""

    head0 = "input"

    def fit(self, loss, alpha, x, targets, noisy):
        return f"{loss}:{alpha:g}"


@pytest.mark.parametrize("retention, want", [
    ({"kl:1": 0.79, "kl:3": 0.785, "kl:10": 0.70}, 3.0),  # 10 forgets 10 points: the best allowed is 3
    ({"kl:1": 0.70, "kl:3": 0.75, "kl:10": 0.70}, 3.0),  # all forget: the one that keeps the most
    ({"kl:1": 0.70, "kl:3": 0.70, "kl:10": 0.70}, 10.0),  # ... and on a tie, the best score
    ({"kl:1": None, "kl:3": None, "kl:10": None}, 10.0),  # no retention images: the most stable
])
def test_choose_alpha_keeps_retention(retention, want):
    from instab.studies.mitigate.tuning import choose_alpha

    instab = {"input": 0.10, "ce:0": 0.08, "kl:1": 0.05, "kl:3": 0.03, "kl:10": 0.01}
    no_guard = retention["kl:1"] is None
    base = {"input": None if no_guard else 0.80, "ce:0": None if no_guard else 0.80}

    def score(head):
        return {"instability": instab[head], "accuracy": 0.9, "retention": {**base, **retention}[head]}

    keep = {}
    fit = Pairs(np.zeros((2, 1)), [np.zeros((2, 1))], np.zeros((2, 3), np.float32))
    alpha, records = choose_alpha(_FakeTuner(), "kl", (10.0, 1.0, 3.0), fit, score, lambda _: None, keep)
    assert alpha == want and keep == {"plain": "ce:0", "stable": f"kl:{want:g}"}
    assert [r["model"] for r in records] == ["input", "plain", "stable", "stable", "stable"]


def test_real_paired_photos_are_x_prime(small_set, imagenette_dir, tmp_path, models_dir, monkeypatch):
    """--pair-images: x is the user's photo, x' its partner (here a heavily re-encoded copy); the study's protocol
    is measured between the two sets of photos."""
    from PIL import Image

    from instab.studies.mitigate import run_mitigate
    from instab.studies.mitigate.views import PAIR_PHOTOS, PHOTOS

    monkeypatch.setenv("INSTAB_MODELS_DIR", str(models_dir))
    pairs = tmp_path / "pairs"
    for r in csv.DictReader(open(small_set / "labels.csv", newline="")):
        (pairs / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        Image.open(imagenette_dir / r["file"]).convert("RGB").save(pairs / r["file"], "JPEG", quality=15)
    options = MitigateOptions(trainable="last:2", epochs=1, alpha=3.0, int8=False)
    result = run_mitigate("mobilenet-v2-int8-st", imagenette_dir, small_set / "labels.csv", options,
                          pair_images=pairs, log=None)
    assert result.meta["views"] == [PHOTOS, PAIR_PHOTOS]
    assert set(result.rows) == {"input", "plain", "stable"} and not result.int8_rows
    assert list(result.rows["input"]["accuracy"])[:2] == [PHOTOS, PAIR_PHOTOS]
    written = result.write(tmp_path / "out")
    assert "model_int8.onnx" not in written and {"model.onnx", "plain.onnx", "report.html"} <= set(written)
