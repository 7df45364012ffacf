"""The training graph: forward pass on clean and perturbed images, loss, gradients and optimizer update.

From a float ONNX classifier, :func:`build_training_graph` makes one ONNX graph

    inputs:  x, x_noisy (absent for loss="ce"), labels, lr, [step], parameters, optimizer state
    outputs: loss, ce, stability, updated parameters, updated optimizer state

The clean and perturbed batches go through the network together (concatenated
along the batch axis). The loss is ``CE(f(x), y) + alpha * Ls(x, x')`` with Ls
the KL divergence ``KL(p(x) || p(x'))`` (``loss="kl"``) or the mean squared L2
distance between embeddings (``loss="embedding"``): the output of a dense layer
inserted before the classifier, initialised to the identity so the model is
unchanged at the start. ``loss="ce"`` trains on clean images only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from instab._shared.onnx_graph import (
    as_proto,
    attr,
    constants,
    ensure_opset,
    image_input,
    initializer_names,
    initializers,
    producers,
    prune,
    shapes,
    static_dims,
)
from instab.train.autodiff import backward
from instab.train.builder import NodeBuilder
from instab.train.layers import parameter_layers, select_trainable
from instab.train.loss import CE, LABELS, LOSS, STABILITY, loss_nodes
from instab.train.optim import Optimizer
from instab.train.simplify import simplify

LOSSES = ("kl", "embedding", "ce")

X, X_NOISY, LR, STEP = "x", "x_noisy", "lr", "step"


@dataclass
class TrainingGraph:
    """A built training graph and what is needed to run it and to export the result.

    ``params`` are the trainable parameter names (graph inputs; the updated value
    of ``p`` is output ``updated_name(p)``), ``state`` the optimizer state names
    with their initial values, ``initial`` the starting parameter values.
    """

    model: onnx.ModelProto
    inference: onnx.ModelProto
    params: list[str]
    initial: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    optimizer: Optimizer
    loss: str
    alpha: float
    input_dtype: int
    class_offset: int
    num_outputs: int
    layers: list[list[str]] = field(default_factory=list)
    soft_targets: bool = False

    def export(self, params: dict[str, np.ndarray]) -> onnx.ModelProto:
        """The inference model (same inputs and outputs as the original) with ``params`` as its weights."""
        out = copy.deepcopy(self.inference)
        missing = [p for p in self.params if p not in params]
        if missing:
            raise ValueError(f"params: missing values for {missing[:3]} ({len(missing)} in all)")
        for init in out.graph.initializer:
            if init.name in params:
                arr = np.asarray(params[init.name], dtype=np.float32)
                if list(arr.shape) != list(init.dims):
                    raise ValueError(f"params[{init.name!r}]: shape {arr.shape} != {tuple(init.dims)}")
                init.CopyFrom(numpy_helper.from_array(arr, init.name))
        return out


def updated_name(name: str) -> str:
    """Output name of the updated value of parameter or state tensor ``name``."""
    return f"{name}::updated"


def state_name(param: str, slot: str) -> str:
    """Input name of optimizer state ``slot`` (e.g. ``momentum``) of parameter ``param``."""
    return f"optim::{slot}::{param}"


def find_logits(model: onnx.ModelProto) -> str:
    """The tensor holding the class scores: the input of a final Softmax, else the model's output."""
    graph = model.graph
    if len(graph.output) != 1:
        raise ValueError(f"model: expected one output, found {[o.name for o in graph.output]} (pass logits=)")
    out = graph.output[0].name
    made_by = producers(graph.node)
    node = made_by.get(out)
    while node is not None and node.op_type in ("Identity",):
        node = made_by.get(node.input[0])
    if node is not None and node.op_type == "Softmax":
        return node.input[0]
    return out


def _classifier(model: onnx.ModelProto, logits: str) -> tuple[onnx.NodeProto, int]:
    """The MatMul/Gemm producing ``logits`` (possibly through a bias Add) and its feature operand index."""
    producer = producers(model.graph.node)
    inits = initializer_names(model.graph)
    node = producer.get(logits)
    # Walk back through the bias and shape/saturation ops that may follow the classifier's product.
    while node is not None and node.op_type in ("Add", "Identity", "Reshape", "Flatten", "Squeeze", "Clip"):
        nxt = [producer[i] for i in node.input if i in producer and i not in inits]
        node = nxt[0] if len(nxt) == 1 else None
    if node is None or node.op_type not in ("MatMul", "Gemm"):
        raise ValueError("model: no MatMul/Gemm classifier layer found before the logits (needed for the embedding)")
    feats = [k for k, i in enumerate(node.input[:2]) if i not in inits]
    if len(feats) != 1:
        raise ValueError(f"classifier node {node.name!r}: expected one non-constant operand")
    return node, feats[0]


def _insert_embedding(model: onnx.ModelProto, logits: str) -> tuple[str, list[str]]:
    """Insert ``h = e W + b`` (W = identity, b = 0) between the features e and the classifier; return h."""
    node, k = _classifier(model, logits)
    if node.op_type == "Gemm" and (k == 0 and attr(node, "transA", 0) or k == 1):
        raise ValueError(f"classifier node {node.name!r}: only Gemm(features, W) without transA is supported")
    graph = model.graph
    feat = node.input[k]
    dims = shapes(onnx.shape_inference.infer_shapes(model)).get(feat)
    if not dims or dims[-1] is None or len(dims) != 2:
        raise ValueError(f"classifier features {feat!r}: expected a [N, D] tensor with static D, got {dims}")
    d = int(dims[-1])
    w, bias, mm, h = "embedding/W", "embedding/b", "embedding/matmul", "embedding"
    graph.initializer.extend([
        numpy_helper.from_array(np.eye(d, dtype=np.float32), w), numpy_helper.from_array(np.zeros(d, np.float32), bias),
    ])
    new_nodes = [
        helper.make_node("MatMul", [feat, w], [mm], name="embedding/MatMul"),
        helper.make_node("Add", [mm, bias], [h], name="embedding/Add"),
    ]
    idx = list(graph.node).index(node)
    node.input[k] = h
    for j, nn in enumerate(new_nodes):
        graph.node.insert(idx + j, nn)
    return h, [w, bias]


RESERVED = {X, X_NOISY, LABELS, LR, STEP, LOSS, CE, STABILITY}


def _avoid_reserved_names(proto: onnx.ModelProto, *keep: str | None) -> list[str | None]:
    """Rename model tensors that clash with the training graph's own input/output names.

    Returns the names in ``keep`` after renaming. Initializers are never renamed
    (their names are the parameters' identity); a clash there is an error.
    """
    g = proto.graph
    clash = [i.name for i in g.initializer if i.name in RESERVED]
    if clash:
        raise ValueError(f"model: initializer name(s) {clash} are reserved by the training graph")
    names = {t for n in g.node for t in n.output} | {i.name for i in g.input}
    ren = {t: f"model::{t}" for t in names & RESERVED}
    if not ren:
        return list(keep)
    for n in g.node:
        n.input[:] = [ren.get(i, i) for i in n.input]
        n.output[:] = [ren.get(o, o) for o in n.output]
    for v in list(g.input) + list(g.output) + list(g.value_info):
        v.name = ren.get(v.name, v.name)
    return [ren.get(k, k) if k else k for k in keep]


@dataclass
class _Prepared:
    """The model made ready for training: embedding inserted, reserved names avoided."""

    proto: onnx.ModelProto  # renamed where its tensors clash with the training graph's names
    inference: onnx.ModelProto  # the model to export, embedding included, names as the user gave them
    image: onnx.ValueInfoProto
    logits: str
    embedding: str | None
    emb_params: list[str]


def build_training_graph(
    model,
    loss: str = "kl",
    alpha: float = 0.1,
    optimizer: Optimizer | str = "sgd",
    trainable: str | int = "all",
    logits: str | None = None,
    class_offset: int | None = None,
    soft_targets: bool = False,
) -> TrainingGraph:
    """Build the training graph of a float ONNX classifier (a path, an ``onnx.ModelProto`` or an instab Model).

    ``class_offset`` is added to the labels (default: 1 for a 1001-way model with
    a background class first, else 0). With ``soft_targets`` the ``labels`` input is a
    float [N, classes] probability matrix (e.g. a teacher's softmax, for distillation)
    and the cross-entropy is ``-sum(t * log p)``; otherwise it is int64 class indices [N].
    """
    optimizer = _check_options(loss, alpha, optimizer)
    if hasattr(model, "spec") and class_offset is None:
        class_offset = int(getattr(model.spec, "class_offset", 0))
    prep = _prepare_model(model, loss, trainable, logits)
    layers = parameter_layers(prep.proto)
    params = _trainable_params(prep.proto, layers, trainable, prep.emb_params)
    known, n_out = _static_shapes(prep)
    if class_offset is None:
        class_offset = 1 if n_out == 1001 else 0
    fwd, consts, clamp_inits, b = _forward(prep, known, params)
    two = loss != "ce"
    # The node lists are taken from the builder in turn: one builder names every new tensor.
    head = _image_head(b, prep.image.name, two)
    seeds = loss_nodes(b, loss, alpha, prep.logits, prep.embedding, n_out, class_offset, soft_targets)
    loss_part = _drain(b)
    grads = backward(fwd, seeds, params, b, consts)
    grad_part = _drain(b)
    state, new_values = _optimizer_update(b, optimizer, params, grads, known)
    opt_part = _drain(b)
    graph = prep.proto.graph
    initial = {i.name: numpy_helper.to_array(i).copy() for i in graph.initializer if i.name in set(params)}
    inputs = _graph_inputs(prep.image, two, soft_targets, n_out, class_offset, optimizer, params, state, known)
    outputs = _graph_outputs(new_values, state, known)
    pset = set(params)
    used = {i for n in fwd for i in n.input}
    inits = [i for i in graph.initializer if i.name not in pset and i.name in used] + clamp_inits + b.initializers
    nodes = head + fwd + loss_part + grad_part + opt_part
    tgraph = helper.make_graph(nodes, "instab_training", inputs, outputs, inits)
    tmodel = helper.make_model(tgraph, opset_imports=list(prep.proto.opset_import), producer_name="instab.train")
    tmodel.ir_version = prep.proto.ir_version
    return TrainingGraph(
        model=tmodel,
        inference=prep.inference,
        params=params,
        initial=initial,
        state=state,
        optimizer=optimizer,
        loss=loss,
        alpha=float(alpha),
        input_dtype=prep.image.type.tensor_type.elem_type,
        class_offset=int(class_offset),
        num_outputs=n_out,
        layers=layers,
        soft_targets=bool(soft_targets),
    )


def _check_options(loss: str, alpha: float, optimizer: Optimizer | str) -> Optimizer:
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha: expected a finite value >= 0, got {alpha}")
    return Optimizer(optimizer) if isinstance(optimizer, str) else optimizer


def _prepare_model(model, loss: str, trainable: str | int, logits: str | None) -> _Prepared:
    """The model's proto with the embedding layer (when needed) and no clash with the training graph's names."""
    proto = ensure_opset(as_proto(model))
    image_input(proto.graph)  # fails early, with its own message, when there is no image input
    logits = logits or find_logits(proto)
    embedding: str | None = None
    emb_params: list[str] = []
    if loss == "embedding" or trainable == "embedding":
        embedding, emb_params = _insert_embedding(proto, logits)
    inference = copy.deepcopy(proto)
    renamed_logits, embedding = _avoid_reserved_names(proto, logits, embedding)
    # The image input is looked up again: renaming may have changed it.
    return _Prepared(proto, inference, image_input(proto.graph), cast(str, renamed_logits), embedding, emb_params)


def _trainable_params(
    proto: onnx.ModelProto, layers: list[list[str]], trainable: str | int, emb_params: list[str]
) -> list[str]:
    if not layers:
        raise ValueError("model: no trainable parameters (Conv/MatMul/Gemm weights stored as float initializers)")
    params = select_trainable(layers, trainable, emb_params)
    by_name = initializers(proto.graph)
    for p in params:
        if by_name[p].data_type != TensorProto.FLOAT:
            raise ValueError(f"parameter {p!r}: only float32 parameters can be trained")
    return params


def _static_shapes(prep: _Prepared) -> tuple[dict[str, list[int | None]], int]:
    """Static shapes of the model's tensors with the image batch made symbolic, and the class count."""
    sym = copy.deepcopy(prep.proto)
    for i in sym.graph.input:
        if i.name == prep.image.name and i.type.tensor_type.shape.dim:
            i.type.tensor_type.shape.dim[0].dim_param = "N"
    known = shapes(onnx.shape_inference.infer_shapes(sym))
    logits = prep.logits
    shape = known.get(logits)
    classes = shape[1] if shape is not None and len(shape) == 2 else None
    if classes is None:
        raise ValueError(f"logits {logits!r}: expected a [N, classes] tensor with a static class count")
    return known, int(classes)


def _forward(
    prep: _Prepared, known: dict[str, list[int | None]], params: list[str]
) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray], list[onnx.TensorProto], NodeBuilder]:
    """The forward nodes the loss needs (simplified), the constants, and a builder for the new nodes."""
    graph = prep.proto.graph
    targets = {prep.logits} | ({prep.embedding} if prep.embedding else set())
    consts = constants(graph)
    # Trained tensors change: simplification may only rely on the values of frozen ones.
    frozen = {k: v for k, v in consts.items() if k not in set(params)}
    fwd, clamp_inits = simplify(prune(graph.node, targets), frozen, targets, known)
    consts.update({i.name: numpy_helper.to_array(i) for i in clamp_inits})
    taken = {t for n in graph.node for t in list(n.input) + list(n.output)} | set(consts)
    taken |= RESERVED
    return fwd, consts, clamp_inits, NodeBuilder("train/", taken, known)


def _drain(b: NodeBuilder) -> list[onnx.NodeProto]:
    """The nodes appended to ``b`` since the last drain."""
    nodes = list(b.nodes)
    b.nodes.clear()
    return nodes


def _image_head(b: NodeBuilder, model_in: str, two: bool) -> list[onnx.NodeProto]:
    """The model's input becomes the batch of clean (and perturbed) images."""
    if two:
        b.nodes.append(helper.make_node("Concat", [X, X_NOISY], [model_in], axis=0, name="train/concat_images"))
    else:
        b.nodes.append(helper.make_node("Identity", [X], [model_in], name="train/images"))
    return _drain(b)


def _optimizer_update(
    b: NodeBuilder, optimizer: Optimizer, params: list[str], grads: dict[str, str],
    known: dict[str, list[int | None]],
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Append the optimizer update; return (state name -> initial value, updated tensor name -> its source)."""
    state: dict[str, np.ndarray] = {}
    slots: dict[str, list[str]] = {}
    for p in params:
        slots[p] = [state_name(p, s) for s in optimizer.slots()]
        dims = [d for d in known[p] if d is not None]
        assert len(dims) == len(known[p]), f"parameter {p!r}: initializer shapes are static"
        for s in slots[p]:
            state[s] = np.zeros(dims, np.float32)
    new_values = optimizer.update(b, grads, slots, LR, STEP if optimizer.uses_step() else None)
    for name, src in new_values.items():
        b.nodes.append(helper.make_node("Identity", [src], [updated_name(name)], name=f"train/out/{name}"))
    return state, new_values


def _graph_inputs(
    image: onnx.ValueInfoProto, two: bool, soft_targets: bool, n_out: int, class_offset: int, optimizer: Optimizer,
    params: list[str], state: dict[str, np.ndarray], known: dict[str, list[int | None]],
) -> list[onnx.ValueInfoProto]:
    """x, x_noisy (two batches only), labels, lr, step (optimizers that count), parameters, optimizer state."""
    dtype = image.type.tensor_type.elem_type
    img_shape = ["N"] + static_dims(image)[1:]
    inputs = [helper.make_tensor_value_info(X, dtype, img_shape)]
    if two:
        inputs.append(helper.make_tensor_value_info(X_NOISY, dtype, img_shape))
    if soft_targets:
        inputs.append(helper.make_tensor_value_info(LABELS, TensorProto.FLOAT, ["N", n_out - class_offset]))
    else:
        inputs.append(helper.make_tensor_value_info(LABELS, TensorProto.INT64, ["N"]))
    inputs.append(helper.make_tensor_value_info(LR, TensorProto.FLOAT, []))
    if optimizer.uses_step():
        inputs.append(helper.make_tensor_value_info(STEP, TensorProto.FLOAT, []))
    for p in params:
        inputs.append(helper.make_tensor_value_info(p, TensorProto.FLOAT, known[p]))
    for s, v in state.items():
        inputs.append(helper.make_tensor_value_info(s, TensorProto.FLOAT, list(v.shape)))
    return inputs


def _graph_outputs(
    new_values: dict[str, str], state: dict[str, np.ndarray], known: dict[str, list[int | None]]
) -> list[onnx.ValueInfoProto]:
    """loss, ce, stability, then the updated parameters and optimizer state."""
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, []) for n in (LOSS, CE, STABILITY)]
    for name in new_values:
        shape = list(state[name].shape) if name in state else known[name]
        outputs.append(helper.make_tensor_value_info(updated_name(name), TensorProto.FLOAT, shape))
    return outputs


def build_gradient_graph(model, output: str | None = None, wrt: list[str] | None = None) -> onnx.ModelProto:
    """A graph computing vector-Jacobian products of ``model``.

    Inputs: the model's inputs plus ``<output>::seed`` (same shape as ``output``);
    outputs: ``output`` and ``<t>::grad`` = d(sum(seed * output))/dt for each ``t`` in
    ``wrt`` (graph inputs or float initializers; default: every float initializer).
    Used by the finite-difference checks; also handy for saliency maps.
    """
    proto = ensure_opset(as_proto(model))
    graph = proto.graph
    output = output or graph.output[0].name
    inferred = onnx.shape_inference.infer_shapes(proto)
    known = shapes(inferred)
    consts = constants(graph)
    if wrt is None:
        wrt = [i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT]
    taken = {t for n in graph.node for t in list(n.input) + list(n.output)} | set(consts)
    taken |= {i.name for i in graph.input}
    b = NodeBuilder("grad/", taken, known)
    seed = f"{output}::seed"
    grads = backward(prune(graph.node, {output}), {output: seed}, wrt, b, consts)
    for t, g in grads.items():
        b.nodes.append(helper.make_node("Identity", [g], [f"{t}::grad"], name=f"grad/out/{t}"))
    out_vi = next((v for v in list(inferred.graph.value_info) + list(inferred.graph.output) if v.name == output), None)
    if out_vi is None:
        raise ValueError(f"output {output!r}: its type could not be inferred")
    seed_vi = copy.deepcopy(out_vi)
    seed_vi.name = seed
    graph.input.append(seed_vi)
    graph.node.extend(b.nodes)
    graph.initializer.extend(b.initializers)
    del graph.output[:]
    graph.output.append(out_vi)
    for t in wrt:
        graph.output.append(helper.make_tensor_value_info(f"{t}::grad", TensorProto.FLOAT, known.get(t)))
    return proto

__all__ = [
    "LOSSES",
    "RESERVED",
    "TrainingGraph",
    "build_gradient_graph",
    "build_training_graph",
    "find_logits",
    "parameter_layers",
    "select_trainable",
    "state_name",
    "updated_name",
]
