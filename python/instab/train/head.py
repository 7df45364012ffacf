"""Fine-tuning the last layers fast: a frozen backbone runs once per image, the head trains on its features.

When only the last layers train (``trainable="last:N"``), everything before them
is a fixed function of the image. :func:`split_model` cuts the float model at the
input of the first trainable layer into a *backbone* (image -> features) and a
*head* (features -> output). The backbone runs once per image (and once per
noise draw of x'), the head's training graph (:func:`instab.train.build_training_graph`)
runs every step on cached features, and :func:`join` puts the trained head back
behind the backbone. The result is the same function as training the full
graph with the same trainable set (tested), at a fraction of the cost.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from instab._shared.onnx_graph import (
    as_proto,
    constant_names,
    ensure_opset,
    graph_inputs,
    initializers,
    prune,
    shapes,
)
from instab._shared.validation import check_threads
from instab.train.layers import parameter_layers, select_trainable
from instab.train.loop import Trainer


@dataclass
class SplitModel:
    """A float classifier cut in two at tensor ``cut``: ``backbone`` (image -> cut), ``head`` (cut -> outputs)."""

    backbone: onnx.ModelProto
    head: onnx.ModelProto
    cut: str
    cut_shape: list[int | str | None]  # batch dimension symbolic ("N")
    original: onnx.ModelProto


def _submodel(proto: onnx.ModelProto, nodes, inputs, outputs, name: str) -> onnx.ModelProto:
    used = {i for n in nodes for i in n.input}
    inits = [copy.deepcopy(i) for i in proto.graph.initializer if i.name in used]
    graph = helper.make_graph(list(nodes), name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=list(proto.opset_import), producer_name="instab.train.head")
    model.ir_version = proto.ir_version
    return model


def split_model(model, trainable: str | int = "last:2") -> SplitModel:
    """Cut a float classifier (ModelProto, instab Model or path) before its first trainable layer.

    ``trainable`` is ``last:N`` (or N) as in :func:`instab.train.build_training_graph`;
    ``"embedding"`` cuts before the classifier. The cut must be a single tensor that
    everything after it depends on alone (true of chain-like classifiers such as
    MobileNetV2 at any layer boundary outside a residual block); otherwise a
    ValueError names the tensor that crosses the cut.
    """
    proto = ensure_opset(as_proto(model))
    graph = proto.graph
    if trainable == "all":
        raise ValueError("trainable: 'all' leaves no frozen backbone; use last:N")
    layers = parameter_layers(proto)
    chosen = select_trainable(layers, "last:1" if trainable == "embedding" else trainable, [])
    consts = constant_names(graph)
    first = next((k for k, n in enumerate(graph.node) if set(n.input) & set(chosen)), None)
    if first is None:
        raise ValueError(f"trainable {trainable!r}: no node uses the chosen parameters")
    node = graph.node[first]
    flowing = [i for i in node.input if i and i not in consts]
    if len(flowing) != 1:
        raise ValueError(f"layer {node.name!r}: expected one non-constant input to cut at, got {flowing}")
    cut = flowing[0]
    nodes = list(graph.node)
    back = prune(nodes, {cut})
    back_ids = {id(n) for n in back}
    outputs = [o.name for o in graph.output]
    full = prune(nodes, outputs)
    head = [n for n in full if id(n) not in back_ids]
    # Constants the head uses that the backbone produced (Constant nodes) travel with it.
    made_in_head = {o for n in head for o in n.output}
    const_nodes = [n for n in back if n.op_type == "Constant"]
    for n in head:
        for i in n.input:
            if i and i != cut and i not in made_in_head and i not in consts:
                raise ValueError(
                    f"cannot cut before layer {node.name!r}: head node {n.name!r} also reads {i!r} from the backbone "
                    "(a residual connection crosses the cut); train more or fewer layers"
                )
    head_consts = [n for n in const_nodes if set(n.output) & {i for h in head for i in h.input}]
    head = head_consts + head

    sym = copy.deepcopy(proto)
    image = graph_inputs(sym.graph)[0]
    if image.type.tensor_type.shape.dim:
        image.type.tensor_type.shape.dim[0].dim_param = "N"
    inferred = shapes(onnx.shape_inference.infer_shapes(sym)).get(cut)
    if not inferred:
        raise ValueError(f"cut tensor {cut!r}: its shape could not be inferred")
    cut_shape: list[int | str | None] = ["N", *inferred[1:]]
    cut_vi = helper.make_tensor_value_info(cut, TensorProto.FLOAT, cut_shape)
    inputs = graph_inputs(graph)
    backbone = _submodel(proto, back, [copy.deepcopy(i) for i in inputs], [cut_vi], "backbone")
    head_model = _submodel(proto, head, [copy.deepcopy(cut_vi)], [copy.deepcopy(o) for o in graph.output], "head")
    for p in proto.metadata_props:
        head_model.metadata_props.add(key=p.key, value=p.value)
    return SplitModel(backbone, head_model, cut, cut_shape, proto)


def join(split: SplitModel, head: onnx.ModelProto) -> onnx.ModelProto:
    """The full inference model: ``split.backbone`` followed by ``head`` (a trained or exported head)."""
    if not any(i.name == split.cut for i in head.graph.input):
        raise ValueError(f"head: its input must be the cut tensor {split.cut!r}")
    out = copy.deepcopy(split.original)
    g = out.graph
    back_nodes = list(split.backbone.graph.node)
    head_nodes = [n for n in head.graph.node if not (n.op_type == "Constant" and n in back_nodes)]
    del g.node[:]
    g.node.extend(back_nodes)
    g.node.extend(copy.deepcopy(n) for n in head_nodes)
    inits = initializers(split.backbone.graph)
    inits.update(initializers(head.graph))
    del g.initializer[:]
    g.initializer.extend(copy.deepcopy(v) for v in inits.values())
    del g.value_info[:]
    return out


def _session(model: onnx.ModelProto, threads: int | None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = check_threads(threads)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


class FeatureRunner:
    """Runs an ONNX model with one input and one output over a batch in chunks (the backbone, or a head).

    ``threads``: ONNX Runtime intra-op threads, None for all cores, else an int in ``1..MAX_THREADS``.
    """

    def __init__(self, model: onnx.ModelProto, threads: int | None = None, batch_size: int = 32) -> None:
        self.session = _session(model, threads)
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        self.batch_size = int(batch_size)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        parts = [
            self.session.run([self.output], {self.input: np.ascontiguousarray(x[i : i + self.batch_size])})[0]
            for i in range(0, len(x), self.batch_size)
        ]
        if not parts:
            raise ValueError("x: empty batch")
        return np.concatenate(parts)


def train_head(
    trainer: Trainer,
    features: np.ndarray | Sequence[np.ndarray],
    labels: np.ndarray,
    noisy: Sequence[np.ndarray] | None,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 1e-4,
    seed: int = 0,
) -> list[dict]:
    """Train a head's :class:`~instab.train.Trainer` on cached ``features`` with int ``labels``.

    ``noisy[d]`` holds the features of draw ``d`` of x' (aligned with ``features``);
    epoch ``e`` uses draw ``e % len(noisy)``. ``features`` may also be a list of draws
    of x (when x itself varies, as in the devices scheme), used the same way. The image order of each epoch is a
    permutation keyed by (seed, epoch), as in :meth:`Trainer.fit`.
    Returns one record (loss, ce, stability) per step.
    """
    labels = np.asarray(labels, dtype=np.float32 if trainer.graph.soft_targets else np.int64)
    draws_x = [features] if isinstance(features, np.ndarray) else list(features)
    n = len(draws_x[0])
    if len(labels) != n:
        raise ValueError(f"labels: {len(labels)} labels for {n} feature rows")
    needs = trainer.graph.loss != "ce"
    noisy_draws: Sequence[np.ndarray] = noisy or []
    if needs and not noisy_draws:
        raise ValueError(f"noisy: loss {trainer.graph.loss!r} needs the features of x'")
    for d in [*noisy_draws, *draws_x]:
        if d.shape != draws_x[0].shape:
            raise ValueError(f"features/noisy: a draw shaped {d.shape}, another {draws_x[0].shape}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    history = []
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        draw = noisy_draws[epoch % len(noisy_draws)] if needs else None
        x = draws_x[epoch % len(draws_x)]
        for b in range(0, n, batch_size):
            idx = np.sort(order[b : b + batch_size])
            r = trainer.step(x[idx], draw[idx] if draw is not None else None, labels[idx], lr)
            if not np.isfinite(r.loss):
                raise FloatingPointError(f"training diverged at epoch {epoch}: loss {r.loss} (lower lr)")
            history.append({"epoch": epoch, "loss": r.loss, "ce": r.ce, "stability": r.stability})
    return history

__all__ = [
    "FeatureRunner",
    "SplitModel",
    "join",
    "split_model",
    "train_head",
]
