"""Optimizer updates against known answers, without PyTorch.

Two levels:

- the update nodes alone (:meth:`Optimizer.update` emitted into a small ONNX graph and run by
  ONNX Runtime) on given gradients, against values worked out by hand: closed forms for a
  constant gradient, and the textbook recurrences written out step by step;
- the whole training graph (``loss="ce"``) of a linear softmax classifier, whose cross-entropy
  gradient is ``X^T (softmax(XW + b) - Y) / N`` (written in numpy here), for three steps through
  :class:`Trainer`, which also feeds Adam's step counter.

Adam without its bias corrections moves the first step by ``lr * 0.1 / sqrt(0.001) = 3.16 lr``
instead of ``lr``, so each Adam check below fails for it.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from instab.train import Optimizer, build_training_graph
from instab.train.builder import NodeBuilder
from instab.train.loop import Trainer
from tests._support.training import session

LR = 0.01


def update_graph(opt: Optimizer, shape: tuple[int, ...]) -> onnx.ModelProto:
    """Inputs p, g, lr, [step], state slots; outputs the new p and the new state (in slot order)."""
    slots = [f"s{i}" for i in range(len(opt.slots()))]
    b = NodeBuilder("opt/", {"p", "g", "lr", "step", *slots})
    new = opt.update(b, {"p": "g"}, {"p": slots}, "lr", "step" if opt.uses_step() else None)
    outs = ["p", *slots]
    nodes = b.nodes + [helper.make_node("Identity", [new[n]], [f"new_{n}"]) for n in outs]
    def t(name: str, shape) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))

    inputs = [t("p", shape), t("g", shape), t("lr", ())] + ([t("step", ())] if opt.uses_step() else [])
    inputs += [t(s, shape) for s in slots]
    g = helper.make_graph(nodes, "opt", inputs, [t(f"new_{n}", shape) for n in outs], b.initializers)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def run_steps(opt: Optimizer, p0, grads, lr: float = LR) -> list[np.ndarray]:
    """Parameters after each step, the ONNX update fed the given gradient sequence."""
    p = np.asarray(p0, np.float32)
    s = session(update_graph(opt, p.shape))
    state = [np.zeros_like(p) for _ in opt.slots()]
    out = []
    for t, g in enumerate(grads, start=1):
        feeds = {"p": p, "g": np.asarray(g, np.float32), "lr": np.array(lr, np.float32)}
        if opt.uses_step():
            feeds["step"] = np.array(t, np.float32)
        feeds.update({f"s{i}": v for i, v in enumerate(state)})
        p, *state = s.run(None, feeds)
        out.append(p)
    return out


# ---------------------------------------------------------------------------
# closed forms for a constant gradient g


def test_sgd_momentum_constant_gradient():
    # v1 = g, v2 = (1 + mu) g, v3 = (1 + mu + mu^2) g: p3 = p0 - lr g (3 + 2 mu + mu^2).
    mu, p0, g = 0.9, np.array([1.0, -2.0, 0.5]), np.array([0.5, 2.0, -4.0])
    ps = run_steps(Optimizer("sgd", momentum=mu), p0, [g] * 3)
    for t, factor in enumerate([1.0, 2.0 + mu, 3.0 + 2 * mu + mu * mu]):
        np.testing.assert_allclose(ps[t], p0 - LR * g * factor, rtol=1e-6, atol=1e-7)
    # By hand for mu = 0.9: 3 + 1.8 + 0.81 = 5.61 gradients' worth after three steps.
    np.testing.assert_allclose(ps[2][0], 1.0 - 0.01 * 0.5 * 5.61, rtol=1e-6)


def test_sgd_without_momentum_and_with_l2():
    # momentum 0: p1 = p0 - lr (g + wd p0).
    p0, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    (p1,) = run_steps(Optimizer("sgd", momentum=0.0, weight_decay=0.1), p0, [g])
    np.testing.assert_allclose(p1, [1.0 - 0.01 * (0.5 + 0.1), -2.0 - 0.01 * (0.25 - 0.2)], rtol=1e-6)


def test_adam_constant_gradient_moves_lr_per_step():
    # m_t = (1 - b1^t) g and v_t = (1 - b2^t) g^2, so the corrected m/sqrt(v) = sign(g):
    # every step moves each parameter by lr * |g| / (|g| + eps), whatever the size of g.
    p0, g = np.array([1.0, -2.0, 0.5, 3.0]), np.array([0.5, -2.0, 1e-3, 40.0])
    ps = run_steps(Optimizer("adam"), p0, [g] * 3)
    for t in range(3):
        np.testing.assert_allclose(ps[t], p0 - (t + 1) * LR * g / (np.abs(g) + 1e-8), rtol=1e-6, atol=1e-7)


def test_adamw_constant_gradient_decays_then_steps():
    # Decoupled decay: p_t = p_{t-1} (1 - lr wd) - lr sign(g).
    wd, p0, g = 0.5, np.array([1.0, -2.0]), np.array([0.3, 0.7])
    ps = run_steps(Optimizer("adamw", weight_decay=wd), p0, [g] * 3)
    p = p0.copy()
    for t in range(3):
        p = p * (1 - LR * wd) - LR * np.sign(g)
        np.testing.assert_allclose(ps[t], p, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ps[0], [1.0 * 0.995 - 0.01, -2.0 * 0.995 - 0.01], rtol=1e-6)


def test_adam_l2_is_added_to_the_gradient():
    # Adam's weight_decay is L2 on the gradient (torch.optim.Adam): step 1 moves by lr sign(g + wd p0).
    p0, g = np.array([1.0, 1.0]), np.array([0.3, -0.3])
    (p1,) = run_steps(Optimizer("adam", weight_decay=0.5), p0, [g])
    np.testing.assert_allclose(p1, [1.0 - LR, 1.0 - LR], rtol=1e-6)  # g + 0.5 = 0.8 and 0.2: both positive


# ---------------------------------------------------------------------------
# changing gradients, the recurrences written out


def test_adam_three_steps_by_hand():
    b1, b2, eps = 0.9, 0.999, 1e-8
    p0 = np.array([0.5, -1.0])
    grads = [np.array([1.0, -0.5]), np.array([-2.0, 0.25]), np.array([0.5, 0.0])]
    ps = run_steps(Optimizer("adam"), p0, grads)
    m = v = np.zeros(2)
    p = p0.copy()
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - LR * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        np.testing.assert_allclose(ps[t - 1], p, rtol=1e-5, atol=1e-7)
    # Step 2, first coordinate, by hand: m2 = 0.09 - 0.2 = -0.11, m2/0.19 = -0.578947;
    # v2 = 0.000999 + 0.004 = 0.004999, sqrt(v2/0.001999) = 1.581376; step 0.01 * 0.366098.
    np.testing.assert_allclose(ps[1][0], 0.5 - 0.01 + 0.01 * 0.366098, rtol=1e-5)


def test_sgd_momentum_three_steps_by_hand():
    mu = 0.5
    grads = [np.array([1.0]), np.array([-2.0]), np.array([4.0])]
    ps = run_steps(Optimizer("sgd", momentum=mu), [0.0], grads, lr=0.1)
    # v = 1, then -2 + 0.5 = -1.5, then 4 - 0.75 = 3.25; p = -0.1, 0.05, -0.275.
    np.testing.assert_allclose([p[0] for p in ps], [-0.1, 0.05, -0.275], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------
# the whole training graph on a linear softmax classifier


def linear_classifier(w: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """uint8 [N, 2, 2, 3] -> float -> flatten -> MatMul W -> Add b -> Softmax."""
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "scale"], ["fs"]),
        helper.make_node("Flatten", ["fs"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inits = [numpy_helper.from_array(np.float32(1 / 255), "scale"), numpy_helper.from_array(w, "W"),
             numpy_helper.from_array(bias, "b")]
    g = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 2, 2, 3])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", w.shape[1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def ce_gradients(x: np.ndarray, labels: np.ndarray, w: np.ndarray, b: np.ndarray):
    """d mean CE / dW and / db of softmax(x W + b), in float64."""
    z = x @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return x.T @ p / len(labels), p.mean(axis=0)


def numpy_optimizer(opt: Optimizer, lr: float):
    """The update rules of torch.optim.SGD / Adam / AdamW in plain numpy (float64)."""
    state: dict[str, list] = {}

    def step(name: str, p: np.ndarray, g: np.ndarray, t: int) -> np.ndarray:
        if opt.weight_decay and opt.kind != "adamw":
            g = g + opt.weight_decay * p
        if opt.kind == "sgd":
            v = state.get(name, [np.zeros_like(p)])[0] * opt.momentum + g
            state[name] = [v]
            return p - lr * v
        m, v = state.get(name, [np.zeros_like(p), np.zeros_like(p)])
        m = opt.beta1 * m + (1 - opt.beta1) * g
        v = opt.beta2 * v + (1 - opt.beta2) * g * g
        state[name] = [m, v]
        if opt.kind == "adamw":
            p = p * (1 - lr * opt.weight_decay)
        m_hat, v_hat = m / (1 - opt.beta1**t), v / (1 - opt.beta2**t)
        return p - lr * m_hat / (np.sqrt(v_hat) + opt.eps)

    return step


@pytest.mark.parametrize("opt", [Optimizer("sgd", momentum=0.9), Optimizer("adam"),
                                 Optimizer("adamw", weight_decay=0.1), Optimizer("adam", weight_decay=0.05)],
                         ids=["sgd-momentum", "adam", "adamw", "adam-l2"])
def test_training_graph_three_steps_match_numpy(opt):
    rng = np.random.default_rng(0)
    w0 = rng.normal(0, 0.3, (12, 4)).astype(np.float32)
    b0 = rng.normal(0, 0.1, 4).astype(np.float32)
    images = rng.integers(0, 256, (6, 2, 2, 3)).astype(np.uint8)
    labels = np.array([0, 1, 2, 3, 1, 2], np.int64)
    x = images.reshape(6, -1).astype(np.float32) * np.float32(1 / 255)  # the graph's own float32 scaling
    lr = 0.05
    tg = build_training_graph(linear_classifier(w0, b0), loss="ce", optimizer=opt)
    assert sorted(tg.params) == ["W", "b"]
    tr = Trainer(tg, threads=1)
    step = numpy_optimizer(opt, lr)
    w, b = w0.astype(np.float64), b0.astype(np.float64)
    for t in (1, 2, 3):
        gw, gb = ce_gradients(x.astype(np.float64), labels, w, b)
        w, b = step("W", w, gw, t), step("b", b, gb, t)
        tr.step(images, None, labels, lr)
        got = tr.parameters()
        # float32 graph vs float64 numpy: agreement to float32 rounding of a few operations.
        np.testing.assert_allclose(got["W"], w, rtol=1e-5, atol=1e-6, err_msg=f"W after step {t}")
        np.testing.assert_allclose(got["b"], b, rtol=1e-5, atol=1e-6, err_msg=f"b after step {t}")
    # The step really moved the weights by more than the tolerance.
    assert np.abs(w - w0).max() > 1e-2
