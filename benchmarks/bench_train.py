"""One stability-training step (KL loss, SGD with momentum): instab's ONNX Runtime graph vs PyTorch eager.

Full size (benchmarking enabled): the dequantized ST MobileNetV2, batch 16 (32 images
through the network: x and x'), every parameter trained. Correctness mode
(--benchmark-disable): a small MobileNetV2-like graph, batch 4. Before timing,
both engines take one step from the same weights and must agree (loss and updated
weights); without torch the loss is checked against a numpy computation from
the inference model's logits.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest


from instab.train import Optimizer, build_training_graph
from instab.train.dataset import make_perturbation
from instab.train.graph import find_logits
from instab.train.loop import Trainer
from tests._support.training import tiny_classifier, tiny_data

ALPHA, LR = 0.1, 1e-4
OPT = Optimizer("sgd", momentum=0.9)


@pytest.fixture(scope="module")
def case(request):
    full = not request.config.getoption("benchmark_disable")
    if full:
        from instab import models

        models_dir = request.getfixturevalue("models_dir")
        model = models.dequantize(models.load(models_dir / "mobilenet_v2_1.0_224_int8_st.onnx")).proto
        n, size = 16, 224
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        labels = rng.integers(0, 1000, n)
    else:
        model = tiny_classifier()
        x, labels = tiny_data(4)
    xn = make_perturbation("noise:gaussian,sigma=0.1")(x, 0, 0)
    return model, x, xn, labels.astype(np.int64)


def _numpy_loss(model: onnx.ModelProto, x, xn, labels) -> float:
    m = copy.deepcopy(model)
    logits = find_logits(m)
    del m.graph.output[:]
    m.graph.output.append(onnx.helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None))
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    zc, zn = (s.run(None, {name: a})[0].astype(np.float64) for a in (x, xn))

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    lp, lq = log_softmax(zc), log_softmax(zn)
    ce = -lp[np.arange(len(labels)), labels].mean()
    kl = (np.exp(lp) * (lp - lq)).sum() / len(labels)
    return float(ce + ALPHA * kl)


def test_train_step_onnxruntime(benchmark, case):
    model, x, xn, labels = case
    tr = Trainer(build_training_graph(model, loss="kl", alpha=ALPHA, optimizer=OPT))
    first = tr.step(x, xn, labels, LR)
    assert first.loss == pytest.approx(_numpy_loss(model, x, xn, labels), rel=1e-4)
    benchmark.group = "train-step"
    if benchmark.disabled:
        benchmark(tr.step, x, xn, labels, LR)
    else:
        benchmark.pedantic(tr.step, args=(x, xn, labels, LR), rounds=3, iterations=1, warmup_rounds=1)


def test_train_step_torch(benchmark, case):
    torch = pytest.importorskip("torch")
    from tests._support.torch_oracle import TorchGraph, stability_loss

    model, x, xn, labels = case
    tg = build_training_graph(model, loss="kl", alpha=ALPHA, optimizer=OPT)
    tm = TorchGraph(tg.inference, tg.params, [find_logits(tg.inference)])
    opt = torch.optim.SGD([tm.params[p] for p in tg.params], lr=LR, momentum=OPT.momentum)
    batch, y = torch.from_numpy(np.concatenate([x, xn])), torch.from_numpy(labels)

    def step() -> float:
        opt.zero_grad()
        (z,) = tm(batch)
        loss = stability_loss(z, y, ALPHA)
        loss.backward()
        opt.step()
        return float(loss.detach())

    # Same weights, same step: instab's graph and torch agree.
    ours = Trainer(tg)
    r = ours.step(x, xn, labels, LR)
    assert step() == pytest.approx(r.loss, rel=1e-4)
    for p, v in ours.parameters().items():
        np.testing.assert_allclose(v, tm.params[p].detach().numpy(), rtol=1e-3, atol=1e-6, err_msg=p)
    benchmark.group = "train-step"
    if benchmark.disabled:
        benchmark(step)
    else:
        benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=1)
