"""A classifier small enough to predict by hand: softmax of the image's mean colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

#: Classes red, green, blue, none; BIAS is the logit of "none".
NAMES = ["red", "green", "blue", "none"]
# Three flat photos that the colour classifier tells apart, by file stem.
COLOURS = {"a": (255, 64, 0), "b": (0, 255, 64), "c": (64, 0, 255)}
BIAS = 2.5


def colour_classifier(size: int = 12) -> onnx.ModelProto:
    """softmax([4 R / 255, 4 G / 255, 4 B / 255, 2.5]) of the mean colour of a uint8 NHWC image."""
    w = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], np.float32)
    consts = {"gain": np.float32(4 / 255), "w": w, "b": np.array([0, 0, 0, BIAS], np.float32)}
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("Mul", ["mean", "gain"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inp = helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", size, size, 3])
    out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 4])
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    m = helper.make_model(helper.make_graph(nodes, "colour", [inp], [out], inits),
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def expected_top(colour: tuple[int, int, int], k: int) -> tuple[list[int], list[float]]:
    """The model's top-k classes and scores for a uniform image of ``colour``, by hand.

    A uniform image keeps its colour through resizing and cropping, so the mean is the colour.
    """
    logits = np.array([4 * c / 255 for c in colour] + [BIAS])
    probs = np.exp(logits) / np.exp(logits).sum()
    order = np.argsort(-probs)[:k]
    return order.tolist(), probs[order].tolist()


def write_colour_folder(folder: Path) -> Path:
    """Write ``colour.onnx`` and flat 20x16 photos ``a.png``, ``b.png``, ``c.png`` (:data:`COLOURS`) into ``folder``."""
    onnx.save(colour_classifier(), str(folder / "colour.onnx"))
    for name, colour in COLOURS.items():
        Image.fromarray(np.full((20, 16, 3), colour, np.uint8)).save(folder / f"{name}.png")
    return folder


__all__ = ["BIAS", "COLOURS", "NAMES", "colour_classifier", "expected_top", "write_colour_folder"]
