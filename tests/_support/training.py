"""Helpers for the training tests: small ONNX graphs and finite-difference gradient checks."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from instab.train import build_gradient_graph

OPSET = 13


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, np.ndarray],
    output: str,
    consts: dict[str, np.ndarray] | None = None,
) -> onnx.ModelProto:
    """A model whose float inputs are ``inputs`` (fed at run time) and constants ``consts``."""
    vis = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in inputs.items()]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (consts or {}).items()]
    out = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "t", vis, [out], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    m = onnx.shape_inference.infer_shapes(m)
    onnx.checker.check_model(m)
    return m


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def fd_check(
    model: onnx.ModelProto,
    feeds: dict[str, np.ndarray],
    wrt: list[str],
    seed: int = 0,
    eps: float = 1e-3,
    rtol: float = 2e-2,
    output: str | None = None,
) -> dict[str, float]:
    """Check the emitted gradients against central differences along random directions.

    Returns {tensor: relative error}; asserts each is below ``rtol``.
    """
    rng = np.random.default_rng(seed)
    output = output or model.graph.output[0].name
    fwd = session(model)
    y = fwd.run([output], feeds)[0]
    r = rng.standard_normal(y.shape).astype(np.float32)
    gm = build_gradient_graph(model, output, wrt)
    grads = session(gm).run([f"{t}::grad" for t in wrt], {**feeds, f"{output}::seed": r})
    errors = {}
    for t, g in zip(wrt, grads, strict=True):
        assert g.shape == feeds[t].shape, (t, g.shape, feeds[t].shape)
        v = rng.standard_normal(feeds[t].shape).astype(np.float32)

        def loss(delta: float, t: str = t, v: np.ndarray = v) -> float:
            f = dict(feeds)
            f[t] = (feeds[t].astype(np.float64) + delta * v).astype(np.float32)
            return float(np.sum(fwd.run([output], f)[0].astype(np.float64) * r))

        fd = (loss(eps) - loss(-eps)) / (2 * eps)
        an = float(np.sum(g.astype(np.float64) * v))
        scale = max(abs(an), abs(fd), 1e-3 * float(np.linalg.norm(g)) * float(np.linalg.norm(v)), 1e-6)
        errors[t] = abs(fd - an) / scale
        assert errors[t] < rtol, f"gradient of {t}: analytic {an} vs finite difference {fd}"
    return errors


def tiny_classifier(
    classes: int = 10, size: int = 12, seed: int = 0, channels: int = 8, smooth: bool = False
) -> onnx.ModelProto:
    """A small MobileNetV2-like float classifier on uint8 NHWC input, ending in Softmax.

    It uses the float MobileNetV2's operators: Cast/Mul scaling, Transpose, Conv
    (strided, depthwise, pointwise), Clip, Relu, Min, Pad, Add, GlobalAveragePool,
    Squeeze, MatMul, Softmax. ``smooth`` moves the clamps out of reach and makes
    the Relu an Identity, for finite differences that cross no kink.
    """
    rng = np.random.default_rng(seed)
    c = channels

    def w(*shape, scale=None):
        fan = int(np.prod(shape[1:])) or 1
        return (rng.standard_normal(shape) * (scale or np.sqrt(2.0 / fan))).astype(np.float32)

    consts = {
        "scale": np.float32(1 / 127.5), "shift": np.float32(-1.0),
        "w1": w(c, 3, 3, 3), "b1": w(c, scale=0.1),
        "zero": np.float32(-100 if smooth else 0), "six": np.float32(100 if smooth else 6),
        "dw": w(c, 1, 3, 3), "db": w(c, scale=0.1), "cap": np.full((1, c, 1, 1), 100 if smooth else 4, np.float32),
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
        "w2": w(c, c, 1, 1), "b2": w(c, scale=0.1),
        "ax": np.array([2, 3], np.int64),
        "fc": w(c, classes, scale=0.5), "fb": w(classes, scale=0.1),
    }
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "scale"], ["fs"]),
        helper.make_node("Add", ["fs", "shift"], ["fn"]),
        helper.make_node("Transpose", ["fn"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Clip", ["c1", "zero", "six"], ["a1"]),
        helper.make_node("Pad", ["a1", "pads"], ["p1"]),
        helper.make_node("Conv", ["p1", "dw", "db"], ["c2"], kernel_shape=[3, 3], group=c),
        helper.make_node("Identity" if smooth else "Relu", ["c2"], ["r2"]),
        helper.make_node("Min", ["r2", "cap"], ["a2"]),
        helper.make_node("Conv", ["a2", "w2", "b2"], ["c3"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["c3", "a1"], ["res"]),
        helper.make_node("GlobalAveragePool", ["res"], ["gap"]),
        helper.make_node("Squeeze", ["gap", "ax"], ["feat"]),
        helper.make_node("MatMul", ["feat", "fc"], ["mm"]),
        helper.make_node("Add", ["mm", "fb"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inp = helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", size, size, 3])
    out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    m = helper.make_model(helper.make_graph(nodes, "tiny", [inp], [out], inits),
                          opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def tiny_data(n: int, size: int = 12, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images whose class is visible (a bright patch whose position encodes it)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 120, (n, size, size, 3)).astype(np.uint8)
    for i, y in enumerate(labels):
        r, c = divmod(int(y), 4)
        images[i, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3, y % 3] = 255
    return images, labels.astype(np.int64)


def run_model(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    s = session(model)
    return s.run(None, {s.get_inputs()[0].name: images})[0]
