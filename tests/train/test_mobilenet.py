"""Stability training on the real (dequantized) ST MobileNetV2: gradients of a slice, a short fine-tune."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from instab.train import build_training_graph, parameter_layers
from instab.train.dataset import load_dataset, make_perturbation
from instab.train.loop import Trainer
from tests._support.training import fd_check

MODEL = "mobilenet_v2_1.0_224_int8_st.onnx"


@pytest.fixture(scope="module")
def float_model(models_dir):
    from instab import models

    return models.dequantize(models.load(models_dir / MODEL))


@pytest.fixture(scope="module")
def samples(samples_dir):
    images, labels, _, errors = load_dataset(samples_dir, samples_dir / "labels.csv", 224, limit=8)
    assert not errors
    return images, labels


def _slice(proto: onnx.ModelProto, output: str, wrt: list[str]) -> onnx.ModelProto:
    """The graph up to ``output`` with the ``wrt`` initializers turned into inputs."""
    m = copy.deepcopy(proto)
    g = m.graph
    values = {i.name: numpy_helper.to_array(i) for i in g.initializer if i.name in wrt}
    keep = [i for i in g.initializer if i.name not in wrt]
    del g.initializer[:]
    g.initializer.extend(keep)
    for w in wrt:
        g.input.append(helper.make_tensor_value_info(w, onnx.TensorProto.FLOAT, list(values[w].shape)))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None))
    return m, values


def test_gradients_of_a_mobilenet_slice_match_finite_differences(float_model, samples):
    """Conv1 (strided, asymmetric pads) -> expanded_conv (depthwise, Relu/Min/Clip) -> block_1 (Pad,
    strided depthwise) up to block_1's projection: central differences along random directions.

    eps is small because real activations lie close to the Relu/Clip kinks; this image and
    eps keep every tensor's error under 1% (other images reach a few % from kink crossings).
    """
    proto = float_model.proto
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert "block_1_project" in convs[5].output[0]
    layers = parameter_layers(proto)
    wrt = [p for layer in layers[:6] for p in layer][::-1][:8]
    model, values = _slice(proto, convs[5].output[0], wrt)
    feeds = {proto.graph.input[0].name: samples[0][:1], **values}
    errors = fd_check(model, feeds, wrt, eps=1e-4, rtol=2e-2)
    assert len(errors) == len(set(wrt)) >= 7


def test_short_fine_tune_on_real_images(float_model, samples):
    images, labels = samples
    tg = build_training_graph(float_model, loss="kl", alpha=0.5, optimizer="adam", trainable="last:2")
    assert len(tg.params) == 4  # Conv_1 and the classifier, weights and biases
    tr = Trainer(tg)
    noise = make_perturbation("noise:gaussian,sigma=0.1")
    hist = tr.fit(images, labels, lambda a: a, noise, epochs=3, batch_size=8, lr=1e-3, seed=0)
    assert hist[-1]["loss"] < 0.8 * hist[0]["loss"], [h["loss"] for h in hist]
    tuned = tr.export()
    assert [o.name for o in tuned.graph.output] == [o.name for o in float_model.proto.graph.output]


def test_one_step_matches_torch(float_model, samples):
    torch = pytest.importorskip("torch")
    from instab.train.graph import find_logits
    from tests._support.torch_oracle import TorchGraph, stability_loss

    images, labels = samples[0][:2], samples[1][:2]
    noisy = make_perturbation("noise:gaussian,sigma=0.1")(images, 0, 0)
    from instab.train import Optimizer

    # lr = 1 without momentum: the update is the gradient itself, compared at full float32 precision.
    tg = build_training_graph(float_model, loss="kl", alpha=0.1, optimizer=Optimizer("sgd", momentum=0.0))
    tr = Trainer(tg)
    r = tr.step(images, noisy, labels, 1.0)
    tm = TorchGraph(tg.inference, tg.params, [find_logits(tg.inference)])
    opt = torch.optim.SGD([tm.params[p] for p in tg.params], lr=1.0)
    (z,) = tm(torch.from_numpy(np.concatenate([images, noisy])))
    loss = stability_loss(z, torch.from_numpy(labels), 0.1)
    loss.backward()
    grads = {p: tm.params[p].grad.numpy().copy() for p in tg.params}
    opt.step()
    assert r.loss == pytest.approx(float(loss.detach()), rel=1e-4)
    ours = tr.parameters()
    for p in tg.params:
        ours_grad = tg.initial[p] - ours[p]
        scale = np.abs(grads[p]).max() + 1e-6
        # float32 sums over 2 x 112 x 112 pixels in another order: ~3e-4 of the largest entry
        assert np.abs(ours_grad - grads[p]).max() <= 2e-3 * scale, p


def test_embedding_layer_on_mobilenet(float_model, samples):
    images, labels = samples[0][:4], samples[1][:4]
    tg = build_training_graph(float_model, loss="embedding", alpha=0.1, optimizer="sgd", trainable="embedding")
    assert tg.params[:2] == ["embedding/W", "embedding/b"] and len(tg.params) == 4
    assert tg.initial["embedding/W"].shape == (1280, 1280)
    tr = Trainer(tg)
    from tests._support.training import run_model

    before = run_model(tr.export(), images)
    np.testing.assert_allclose(before, run_model(float_model.proto, images), atol=1e-5)
    r = tr.step(images, make_perturbation("noise:gaussian,sigma=0.1")(images, 0, 0), labels, 1e-3)
    assert r.stability > 0 and np.isfinite(r.loss)
    assert not np.allclose(run_model(tr.export(), images), before)


def test_efficientnet_lite0_float_input_trains(samples):
    """The embedded default (float NCHW input, logits output, Flatten + Gemm head) trains too."""
    from instab import models
    from instab.train.dataset import InputFormat

    model = models.load("efficientnet-lite0")
    fmt = InputFormat.from_model(model.proto, model.spec)
    assert (fmt.layout, fmt.dtype) == ("nchw", "float32")
    images, labels = samples[0][:2], samples[1][:2]
    tr = Trainer(build_training_graph(model, loss="kl", alpha=0.1, optimizer="adam"))
    noisy = make_perturbation("noise:gaussian,sigma=0.1")(images, 0, 0)
    losses = [tr.step(fmt.to_input(images), fmt.to_input(noisy), labels, 1e-4).loss for _ in range(3)]
    assert losses[-1] < losses[0]
    tuned = tr.export()
    assert [o.name for o in tuned.graph.output] == [o.name for o in model.proto.graph.output]
