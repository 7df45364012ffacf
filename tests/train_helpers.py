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
    for t, g in zip(wrt, grads):
        assert g.shape == feeds[t].shape, (t, g.shape, feeds[t].shape)
        v = rng.standard_normal(feeds[t].shape).astype(np.float32)

        def loss(delta: float) -> float:
            f = dict(feeds)
            f[t] = (feeds[t].astype(np.float64) + delta * v).astype(np.float32)
            return float(np.sum(fwd.run([output], f)[0].astype(np.float64) * r))

        fd = (loss(eps) - loss(-eps)) / (2 * eps)
        an = float(np.sum(g.astype(np.float64) * v))
        scale = max(abs(an), abs(fd), 1e-3 * float(np.linalg.norm(g)) * float(np.linalg.norm(v)), 1e-6)
        errors[t] = abs(fd - an) / scale
        assert errors[t] < rtol, f"gradient of {t}: analytic {an} vs finite difference {fd}"
    return errors
