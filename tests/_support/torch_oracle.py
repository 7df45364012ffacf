"""Test/benchmark oracle: run an ONNX graph in PyTorch eager mode (autograd) with the same weights.

Only the operators of the training tests and of the float MobileNetV2 are covered.
Torch is optional: import this module only after ``pytest.importorskip("torch")``.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _conv(n, ins):
    k = len(ins[1].shape) - 2
    pads = list(_attr(n, "pads", [0] * (2 * k)))
    x = ins[0]
    if any(pads):
        x = F.pad(x, [v for i in reversed(range(k)) for v in (pads[i], pads[k + i])])
    return F.conv2d(x, ins[1], ins[2] if len(ins) > 2 else None, stride=_attr(n, "strides", [1] * k),
                    groups=_attr(n, "group", 1))


def _pad(n, ins):
    pads = ins[1].tolist()
    r = len(pads) // 2
    value = float(ins[2]) if len(ins) > 2 and ins[2] is not None else 0.0
    return F.pad(ins[0], [v for i in reversed(range(r)) for v in (pads[i], pads[r + i])], value=value)


def _squeeze(n, ins):
    return ins[0].squeeze(-1).squeeze(-1) if ins[1] is None else ins[0].squeeze(tuple(ins[1].tolist()))


def _gemm(n, ins):
    a = ins[0].t() if _attr(n, "transA", 0) else ins[0]
    b = ins[1].t() if _attr(n, "transB", 0) else ins[1]
    return _attr(n, "alpha", 1.0) * (a @ b) + _attr(n, "beta", 1.0) * ins[2]


def _dequantize(n, ins):
    zp = ins[2].to(torch.float32) if len(ins) > 2 else 0.0
    return (ins[0].to(torch.float32) - zp) * ins[1]


# ONNX operator -> its torch version, called as fn(node, inputs); None marks an omitted optional input.
_OPS = {
    "Conv": _conv,
    "Relu": lambda n, ins: F.relu(ins[0]),
    "Clip": lambda n, ins: torch.clamp(ins[0], ins[1] if len(ins) > 1 else None, ins[2] if len(ins) > 2 else None),
    "Min": lambda n, ins: torch.minimum(ins[0], ins[1]),
    "Max": lambda n, ins: torch.maximum(ins[0], ins[1]),
    "Add": lambda n, ins: ins[0] + ins[1],
    "Mul": lambda n, ins: ins[0] * ins[1],
    "Pad": _pad,
    "Transpose": lambda n, ins: ins[0].permute(*_attr(n, "perm")),
    "GlobalAveragePool": lambda n, ins: ins[0].mean(dim=(2, 3), keepdim=True),
    "Squeeze": _squeeze,
    "MatMul": lambda n, ins: ins[0] @ ins[1],
    "Gemm": _gemm,
    "Softmax": lambda n, ins: torch.softmax(ins[0], dim=_attr(n, "axis", -1)),
    "Cast": lambda n, ins: ins[0].to(torch.float32),
    "Sub": lambda n, ins: ins[0] - ins[1],
    "Identity": lambda n, ins: ins[0],
    "DequantizeLinear": _dequantize,
}


class TorchGraph(torch.nn.Module):
    """An ONNX graph as a torch module; ``params`` (initializer names) become trainable tensors."""

    def __init__(self, model: onnx.ModelProto, params: list[str], outputs: list[str]):
        super().__init__()
        self.nodes = list(model.graph.node)
        self.outputs = outputs
        consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.params = {n: torch.nn.Parameter(torch.from_numpy(consts[n].copy())) for n in params}
        for k, p in enumerate(self.params.values()):
            self.register_parameter(f"p{k}", p)
        self.consts = {n: torch.from_numpy(np.array(v)) for n, v in consts.items() if n not in self.params}
        self.input = next(i.name for i in model.graph.input if i.name not in consts)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        env = {**self.consts, **self.params, self.input: x}
        for n in self.nodes:
            ins = [env[i] if i else None for i in n.input]
            env[n.output[0]] = self._run(n, ins)
        return [env[o] for o in self.outputs]

    def _run(self, n, ins):
        fn = _OPS.get(n.op_type)
        if fn is None:
            raise NotImplementedError(n.op_type)
        return fn(n, ins)


def stability_loss(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float, loss: str = "kl", embedding: torch.Tensor | None = None
) -> torch.Tensor:
    """CE on the clean half plus alpha * KL(p(x) || p(x')) or alpha * mean squared embedding distance."""
    n = len(labels)
    zc, zn = logits[:n], logits[n:]
    ce = F.cross_entropy(zc, labels)
    if loss == "ce":
        return ce
    if loss == "embedding":
        return ce + alpha * ((embedding[:n] - embedding[n:]) ** 2).sum() / n
    logp, logq = F.log_softmax(zc, -1), F.log_softmax(zn, -1)
    kl = (logp.exp() * (logp - logq)).sum() / n
    return ce + alpha * kl
