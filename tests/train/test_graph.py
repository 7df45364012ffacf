"""The training graph end to end on a small MobileNetV2-like model: gradients, optimizers, loop, export."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from instab.train import Optimizer, UnsupportedOperatorError, build_training_graph
from instab.train.dataset import make_perturbation
from instab.train.graph import updated_name
from instab.train.loop import Trainer
from tests._support.training import run_model, session, tiny_classifier, tiny_data

IMAGES, LABELS = tiny_data(24)
NOISE = make_perturbation("noise:gaussian,sigma=0.1")


def run_graph(tg, params, x, xn, labels, lr=0.0, step=1.0, state=None):
    feeds = {"x": x, "labels": labels, "lr": np.array(lr, np.float32)}
    if tg.loss != "ce":
        feeds["x_noisy"] = xn
    if tg.optimizer.uses_step():
        feeds["step"] = np.array(step, np.float32)
    feeds.update(params)
    feeds.update(state if state is not None else tg.state)
    s = session(tg.model)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, feeds), strict=True))


@pytest.mark.parametrize("smooth", [True, False], ids=["smooth", "kinks"])
@pytest.mark.parametrize("loss", ["kl", "embedding", "ce"])
def test_loss_gradient_matches_finite_differences(loss, smooth):
    """Gradients through the whole training graph (loss terms included) against central differences.

    With Relu/Clip/Min kinks some activations lie within 1e-4 of a kink, so
    differences there carry a ~2% bias; the smooth variant is checked tightly.
    """
    tol = 5e-3 if smooth else 3e-2
    tg = build_training_graph(
        tiny_classifier(smooth=smooth), loss=loss, alpha=0.7, optimizer=Optimizer("sgd", momentum=0.0)
    )
    x, y = IMAGES[:6], LABELS[:6]
    xn = NOISE(x, 0, 0)
    rng = np.random.default_rng(3)
    params = dict(tg.initial)
    if loss == "embedding":  # move off the identity so the embedding path is generic
        w = params["embedding/W"]
        params["embedding/W"] = w + 0.1 * rng.standard_normal(w.shape).astype(np.float32)
    out = run_graph(tg, params, x, xn, y, lr=1.0)
    assert out["stability"] >= 0 and (loss == "ce") == (out["stability"] == 0)
    grads = {p: params[p] - out[updated_name(p)] for p in tg.params}
    errors = []
    for p in tg.params:
        v = rng.standard_normal(params[p].shape).astype(np.float32)
        eps = 1e-2 if smooth else 2e-4

        def f(d, p=p, v=v):
            q = dict(params)
            q[p] = (params[p] + d * v).astype(np.float32)
            return float(run_graph(tg, q, x, xn, y)["loss"])

        fd = (f(eps) - f(-eps)) / (2 * eps)
        an = float(np.sum(grads[p].astype(np.float64) * v))
        errors.append(abs(fd - an) / max(abs(an), abs(fd), 1e-3))
        assert errors[-1] < tol, f"{p}: analytic {an} vs finite difference {fd}"


def test_zero_alpha_reproduces_plain_cross_entropy():
    base = tiny_classifier()
    results = []
    for loss, alpha in (("kl", 0.0), ("ce", 0.0)):
        tr = Trainer(build_training_graph(base, loss=loss, alpha=alpha, optimizer="sgd"), threads=1)
        hist = tr.fit(IMAGES, LABELS, lambda a: a, NOISE, epochs=2, batch_size=8, lr=0.05, seed=1)
        results.append((tr.parameters(), [h["ce"] for h in hist]))
    (p_kl, ce_kl), (p_ce, ce_ce) = results
    np.testing.assert_allclose(ce_kl, ce_ce, rtol=1e-5)
    for k in p_ce:
        np.testing.assert_allclose(p_kl[k], p_ce[k], rtol=1e-4, atol=1e-6)
    # and training did move the weights
    assert any(not np.allclose(p_ce[k], build_training_graph(base, loss="ce").initial[k]) for k in p_ce)


@pytest.mark.parametrize("loss,opt", [("kl", "sgd"), ("embedding", "adam"), ("kl", "adamw")])
def test_short_fine_tune_lowers_the_training_loss(loss, opt):
    tg = build_training_graph(tiny_classifier(), loss=loss, alpha=0.5, optimizer=Optimizer(opt, weight_decay=1e-4))
    tr = Trainer(tg, threads=1)
    lr = 0.2 if opt == "sgd" else 2e-2
    hist = tr.fit(IMAGES, LABELS, lambda a: a, NOISE, epochs=15, batch_size=8, lr=lr, seed=0)
    first = np.mean([h["loss"] for h in hist[:3]])
    last = np.mean([h["loss"] for h in hist[-3:]])
    assert last < 0.7 * first, (first, last)


def test_checkpoint_resume_repeats_the_uninterrupted_run(tmp_path):
    def trainer():
        return Trainer(build_training_graph(tiny_classifier(), loss="kl", alpha=0.3, optimizer="adam"), threads=1)

    full = trainer()
    full.fit(IMAGES, LABELS, lambda a: a, NOISE, epochs=2, batch_size=10, lr=1e-3, seed=5)
    ck = tmp_path / "ck.npz"
    first = trainer()
    first.fit(IMAGES, LABELS, lambda a: a, NOISE, epochs=1, batch_size=10, lr=1e-3, seed=5, checkpoint=ck)
    resumed = trainer()
    info = resumed.load_checkpoint(ck)
    assert info["epoch"] == 1 and info["step"] == 3
    resumed.fit(IMAGES, LABELS, lambda a: a, NOISE, epochs=2, batch_size=10, lr=1e-3, seed=5)
    assert resumed.step_count == full.step_count == 6
    for k, v in full.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[k], v)
    for k, v in full.optimizer_state().items():
        np.testing.assert_array_equal(resumed.optimizer_state()[k], v)


def test_checkpoint_for_another_graph_is_refused(tmp_path):
    ck = tmp_path / "ck.npz"
    Trainer(build_training_graph(tiny_classifier(), optimizer="sgd")).save_checkpoint(ck)
    with pytest.raises(ValueError, match="do not match"):
        Trainer(build_training_graph(tiny_classifier(), optimizer="adam")).load_checkpoint(ck)


@pytest.mark.parametrize("loss", ["kl", "embedding"])
def test_export_keeps_inputs_outputs_and_carries_the_weights(loss, tmp_path):
    base = tiny_classifier()
    tr = Trainer(build_training_graph(base, loss=loss, alpha=0.2, optimizer="sgd"), threads=1)
    before = tr.export()
    assert [i.name for i in before.graph.input] == [i.name for i in base.graph.input]
    assert [o.name for o in before.graph.output] == [o.name for o in base.graph.output]
    np.testing.assert_allclose(run_model(before, IMAGES), run_model(base, IMAGES), atol=1e-6)
    tr.fit(IMAGES, LABELS, lambda a: a, NOISE, epochs=2, batch_size=8, lr=0.05)
    path = tmp_path / "tuned.onnx"
    after = tr.export(path)
    onnx.checker.check_model(onnx.load(str(path)))
    probs = run_model(after, IMAGES[:8])
    assert not np.allclose(probs, run_model(base, IMAGES[:8]), atol=1e-4)
    # The exported model computes the training graph's cross-entropy with the trained weights.
    ce = -np.mean(np.log(probs[np.arange(8), LABELS[:8]]))
    out = tr.step(IMAGES[:8], NOISE(IMAGES[:8], 0, 0), LABELS[:8], 0.0)
    assert out.ce == pytest.approx(ce, rel=1e-4)


def test_trainable_sets():
    base = tiny_classifier()
    allp = build_training_graph(base, trainable="all").params
    assert set(allp) == {"w1", "b1", "dw", "db", "w2", "b2", "fc", "fb"}
    assert build_training_graph(base, trainable="last:1").params == ["fc", "fb"]
    assert build_training_graph(base, trainable=2).params == ["w2", "b2", "fc", "fb"]
    emb = build_training_graph(base, loss="kl", trainable="embedding")
    assert emb.params == ["embedding/W", "embedding/b", "fc", "fb"]
    for bad in ("last:0", "some", "last:x"):
        with pytest.raises(ValueError, match="trainable"):
            build_training_graph(base, trainable=bad)


def test_unsupported_operator_on_the_trainable_path_is_named():
    m = tiny_classifier()
    for n in m.graph.node:
        if n.op_type == "Relu":
            n.op_type = "Tanh"
    with pytest.raises(UnsupportedOperatorError, match="'Tanh'"):
        build_training_graph(m, trainable="all")
    # Training only the layers after it needs no Tanh gradient.
    assert build_training_graph(m, trainable="last:2").params == ["w2", "b2", "fc", "fb"]


def test_logits_are_taken_before_the_softmax():
    tg = build_training_graph(tiny_classifier(), loss="ce")
    assert "Softmax" not in {n.op_type for n in tg.model.graph.node if not n.name.startswith("train/")}
    probs = run_model(tiny_classifier(), IMAGES[:5])
    out = run_graph(tg, tg.initial, IMAGES[:5], None, LABELS[:5])
    assert float(out["ce"]) == pytest.approx(-np.mean(np.log(probs[np.arange(5), LABELS[:5]])), rel=1e-5)


def test_bad_arguments():
    tr = Trainer(build_training_graph(tiny_classifier(), loss="kl"))
    x = IMAGES[:4]
    with pytest.raises(ValueError, match="labels"):
        tr.step(x, x, np.array([0, 1, 2, 10]), 0.1)
    with pytest.raises(ValueError, match="lr"):
        tr.step(x, x, LABELS[:4], -1.0)
    with pytest.raises(ValueError, match="x_noisy"):
        tr.step(x, None, LABELS[:4], 0.1)
    with pytest.raises(ValueError, match="loss"):
        build_training_graph(tiny_classifier(), loss="l1")
    with pytest.raises(ValueError, match="alpha"):
        build_training_graph(tiny_classifier(), alpha=-1)
    with pytest.raises(ValueError, match="optimizer"):
        Optimizer("rmsprop")
    with pytest.raises(TypeError, match="model"):
        build_training_graph(42)


def test_model_without_parameters_is_refused():
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [inp], [out]),
                          opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_training_graph(m)


def test_clamp_folding_preserves_the_forward_pass():
    """Relu -> Clip -> Min chains are merged in the training graph; the loss must not change."""
    m = tiny_classifier()
    g = m.graph
    # add a saturating Clip after the Relu6 Clip, as dequantized QDQ models have
    lo, hi = numpy_helper.from_array(np.float32(-1), "sat_lo"), numpy_helper.from_array(np.float32(5), "sat_hi")
    g.initializer.extend([lo, hi])
    for n in g.node:
        if n.output[0] == "a1":
            n.output[0] = "a1_pre"
    idx = next(i for i, n in enumerate(g.node) if n.output[0] == "a1_pre")
    g.node.insert(idx + 1, helper.make_node("Clip", ["a1_pre", "sat_lo", "sat_hi"], ["a1"]))
    tg = build_training_graph(m, loss="ce")
    clips = [n for n in tg.model.graph.node if n.op_type == "Clip" and not n.name.startswith("train/node")]
    assert any(n.name.endswith("/folded") for n in clips)
    probs = run_model(m, IMAGES[:6])
    out = run_graph(tg, tg.initial, IMAGES[:6], None, LABELS[:6])
    assert float(out["ce"]) == pytest.approx(-np.mean(np.log(probs[np.arange(6), LABELS[:6]])), rel=1e-5)


def test_model_tensor_names_that_clash_with_the_training_graph():
    m = tiny_classifier()
    ren = {"image": "x", "logits": "loss", "feat": "labels"}
    for n in m.graph.node:
        n.input[:] = [ren.get(i, i) for i in n.input]
        n.output[:] = [ren.get(o, o) for o in n.output]
    m.graph.input[0].name = "x"
    for loss in ("kl", "embedding"):
        tg = build_training_graph(m, loss=loss, optimizer="sgd")
        tr = Trainer(tg)
        r = tr.step(IMAGES[:4], NOISE(IMAGES[:4], 0, 0), LABELS[:4], 0.01)
        assert np.isfinite(r.loss)
        tuned = tr.export()
        assert tuned.graph.input[0].name == "x"
        assert run_model(tuned, IMAGES[:2]).shape == (2, 10)


@pytest.mark.parametrize("loss", ["kl", "ce", "embedding"])
def test_soft_targets_one_hot_equal_hard_labels(loss):
    """Soft targets that are one-hot rows give the same loss terms and update as int labels."""
    base = tiny_classifier()
    x, y = IMAGES[:6], LABELS[:6]
    xn = NOISE(x, 0, 0)
    hard = build_training_graph(base, loss=loss, alpha=0.7, optimizer="sgd")
    soft = build_training_graph(base, loss=loss, alpha=0.7, optimizer="sgd", soft_targets=True)
    assert soft.soft_targets and not hard.soft_targets
    onehot = np.eye(10, dtype=np.float32)[y]
    a = run_graph(hard, dict(hard.initial), x, xn, y, lr=0.1)
    b = run_graph(soft, dict(soft.initial), x, xn, onehot, lr=0.1)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_soft_target_cross_entropy_matches_numpy_and_pads_a_background_class():
    """CE = -mean sum t log p over the model's classes; with class_offset=1 output 0 gets target 0."""
    base = tiny_classifier()
    x = IMAGES[:5]
    t = np.random.default_rng(2).dirichlet(np.ones(9), 5).astype(np.float32)  # classes 1..9, output 0 = background
    tg = build_training_graph(base, loss="ce", optimizer="sgd", soft_targets=True, class_offset=1)
    out = run_graph(tg, dict(tg.initial), x, None, t)
    p = run_model(base, x).astype(np.float64)
    want = -np.mean(np.sum(t * np.log(p[:, 1:]), axis=1))
    np.testing.assert_allclose(out["ce"], want, rtol=1e-5)
    tr = Trainer(tg, threads=1)
    with pytest.raises(ValueError, match="soft targets shaped"):
        tr.step(x, None, t[:, :5], 0.1)
    with pytest.raises(ValueError, match="finite and >= 0"):
        tr.step(x, None, -t, 0.1)
    tr.step(x, None, t, 0.1)  # a valid batch runs
