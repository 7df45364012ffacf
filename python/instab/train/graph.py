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
from instab.train.optim import Optimizer
from instab.train.simplify import fold_clamps

LOSSES = ("kl", "embedding", "ce")
_LAYER_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
_BIAS_OPS = ("Add", "Mul", "Sub")

X, X_NOISY, LABELS, LR, STEP = "x", "x_noisy", "labels", "lr", "step"
LOSS, CE, STABILITY = "loss", "ce", "stability"


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


def parameter_layers(model: onnx.ModelProto) -> list[list[str]]:
    """Trainable parameters grouped by layer, in graph order.

    A layer is a Conv/ConvTranspose/MatMul/Gemm node's float initializer
    operands, plus a bias or scale added right after it (an Add/Mul/Sub with an
    initializer of more than one element).
    """
    graph = model.graph
    floats = {
        i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT and int(np.prod(i.dims)) > 0
    }
    sizes = {i.name: int(np.prod(i.dims)) for i in graph.initializer}
    layers: list[list[str]] = []
    layer_of: dict[str, int] = {}
    seen: set[str] = set()
    for n in graph.node:
        if n.op_type in _LAYER_OPS:
            ps = [i for i in n.input if i in floats and i not in seen]
            if ps:
                layers.append(ps)
                seen.update(ps)
                layer_of[n.output[0]] = len(layers) - 1
        elif n.op_type in _BIAS_OPS and len(n.input) == 2:
            a, c = n.input
            prev, p = (a, c) if a in layer_of else (c, a) if c in layer_of else (None, None)
            if prev is not None and p in floats and sizes[p] > 1 and p not in seen:
                layers[layer_of[prev]].append(p)
                seen.add(p)
                layer_of[n.output[0]] = layer_of[prev]
    return layers


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
    graph.initializer.extend(
        [numpy_helper.from_array(np.eye(d, dtype=np.float32), w), numpy_helper.from_array(np.zeros(d, np.float32), bias)]
    )
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


def select_trainable(layers: list[list[str]], trainable: str | int, embedding: list[str]) -> list[str]:
    """Parameter names for ``trainable``: "all", "last:N" (or an int N) or "embedding"."""
    if isinstance(trainable, (int, np.integer)) and not isinstance(trainable, bool):
        trainable = f"last:{int(trainable)}"
    if not isinstance(trainable, str):
        raise TypeError(f"trainable: expected 'all', 'last:N', 'embedding' or an int, got {trainable!r}")
    if trainable == "all":
        chosen = layers
    elif trainable.startswith("last:"):
        try:
            k = int(trainable[5:])
        except ValueError:
            raise ValueError(f"trainable: {trainable!r} is not 'last:N' with an integer N") from None
        if k < 1:
            raise ValueError(f"trainable: N must be >= 1, got {k}")
        chosen = layers[-k:]
    elif trainable == "embedding":
        if not embedding:
            raise ValueError("trainable='embedding' needs the added embedding layer")
        chosen = [ly for ly in layers if set(ly) & set(embedding)] + layers[-1:]
    else:
        raise ValueError(f"trainable: expected 'all', 'last:N' or 'embedding', got {trainable!r}")
    out: list[str] = []
    for ly in chosen:
        out.extend(p for p in ly if p not in out)
    return out


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
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha: expected a finite value >= 0, got {alpha}")
    if isinstance(optimizer, str):
        optimizer = Optimizer(optimizer)
    if hasattr(model, "spec") and class_offset is None:
        class_offset = int(getattr(model.spec, "class_offset", 0))
    proto = ensure_opset(as_proto(model))
    graph = proto.graph
    image = image_input(graph)
    logits = logits or find_logits(proto)
    embedding: str | None = None
    emb_params: list[str] = []
    if loss == "embedding" or trainable == "embedding":
        embedding, emb_params = _insert_embedding(proto, logits)
    inference = copy.deepcopy(proto)
    logits, embedding = _avoid_reserved_names(proto, logits, embedding)
    image = image_input(graph)

    layers = parameter_layers(proto)
    if not layers:
        raise ValueError("model: no trainable parameters (Conv/MatMul/Gemm weights stored as float initializers)")
    params = select_trainable(layers, trainable, emb_params)
    by_name = initializers(graph)
    for p in params:
        if by_name[p].data_type != TensorProto.FLOAT:
            raise ValueError(f"parameter {p!r}: only float32 parameters can be trained")

    # Static shapes, with the image batch made symbolic.
    sym = copy.deepcopy(proto)
    for i in sym.graph.input:
        if i.name == image.name and i.type.tensor_type.shape.dim:
            i.type.tensor_type.shape.dim[0].dim_param = "N"
    known = shapes(onnx.shape_inference.infer_shapes(sym))
    if logits not in known or len(known[logits]) != 2 or known[logits][1] is None:
        raise ValueError(f"logits {logits!r}: expected a [N, classes] tensor with a static class count")
    n_out = int(known[logits][1])
    if class_offset is None:
        class_offset = 1 if n_out == 1001 else 0

    targets = {logits} | ({embedding} if embedding else set())
    consts = constants(graph)
    fwd, clamp_inits = fold_clamps(prune(graph.node, targets), consts, targets, known)
    consts.update({i.name: numpy_helper.to_array(i) for i in clamp_inits})
    taken = {t for n in graph.node for t in list(n.input) + list(n.output)} | set(consts)
    taken |= RESERVED
    b = NodeBuilder("train/", taken, known)

    two = loss != "ce"
    # The model's input becomes the batch of clean (and perturbed) images.
    model_in = image.name
    if two:
        b.nodes.append(helper.make_node("Concat", [X, X_NOISY], [model_in], axis=0, name="train/concat_images"))
    else:
        b.nodes.append(helper.make_node("Identity", [X], [model_in], name="train/images"))
    head = list(b.nodes)
    b.nodes.clear()

    seeds = _loss_nodes(b, loss, alpha, logits, embedding, n_out, class_offset, soft_targets)
    loss_nodes = list(b.nodes)
    b.nodes.clear()
    grads = backward(fwd, seeds, params, b, consts)
    grad_nodes = list(b.nodes)
    b.nodes.clear()

    # Optimizer update.
    state: dict[str, np.ndarray] = {}
    slots: dict[str, list[str]] = {}
    for p in params:
        slots[p] = [state_name(p, s) for s in optimizer.slots()]
        for s in slots[p]:
            state[s] = np.zeros(known[p], np.float32)
    new_values = optimizer.update(b, grads, slots, LR, STEP if optimizer.uses_step() else None)
    for name, src in new_values.items():
        b.nodes.append(helper.make_node("Identity", [src], [updated_name(name)], name=f"train/out/{name}"))
    opt_nodes = list(b.nodes)

    initial = {i.name: numpy_helper.to_array(i).copy() for i in graph.initializer if i.name in set(params)}
    in_shape = static_dims(image)
    dtype = image.type.tensor_type.elem_type
    img_shape = ["N"] + in_shape[1:]
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
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, []) for n in (LOSS, CE, STABILITY)]
    for name in new_values:
        shape = list(state[name].shape) if name in state else known[name]
        outputs.append(helper.make_tensor_value_info(updated_name(name), TensorProto.FLOAT, shape))

    pset = set(params)
    used = {i for n in fwd for i in n.input}
    inits = [i for i in graph.initializer if i.name not in pset and i.name in used] + clamp_inits + b.initializers
    tgraph = helper.make_graph(head + fwd + loss_nodes + grad_nodes + opt_nodes, "instab_training", inputs, outputs, inits)
    tmodel = helper.make_model(tgraph, opset_imports=list(proto.opset_import), producer_name="instab.train")
    tmodel.ir_version = proto.ir_version
    return TrainingGraph(
        model=tmodel,
        inference=inference,
        params=params,
        initial=initial,
        state=state,
        optimizer=optimizer,
        loss=loss,
        alpha=float(alpha),
        input_dtype=dtype,
        class_offset=int(class_offset),
        num_outputs=n_out,
        layers=layers,
        soft_targets=bool(soft_targets),
    )


def _loss_nodes(
    b: NodeBuilder, loss: str, alpha: float, logits: str, embedding: str | None, n_out: int, class_offset: int,
    soft_targets: bool = False,
) -> dict[str, str]:
    """Append the loss and the gradient of the loss w.r.t. the logits (and embedding); return the seeds."""
    f = lambda v: b.const(np.float32(v))
    big = np.iinfo(np.int64).max
    n = b.op("Shape", [LABELS], hint="n")
    if soft_targets:
        n = b.op("Slice", [n, b.ints([0]), b.ints([1]), b.ints([0])], hint="n")
    nf = b.op("Cast", [b.op("Squeeze", [n])], to=TensorProto.FLOAT)  # scalar batch size
    two = loss != "ce"
    zc = b.op("Slice", [logits, b.ints([0]), n, b.ints([0])], hint="z_clean") if two else logits
    logp = b.op("LogSoftmax", [zc], axis=-1)
    p = b.op("Exp", [logp])
    if soft_targets:
        # Target rows cover the model's classes; a background output before them gets probability 0.
        onehot = LABELS if not class_offset else b.op(
            "Pad", [LABELS, b.ints([0, class_offset, 0, 0])], hint="targets")
    else:
        y = LABELS if not class_offset else b.op("Add", [LABELS, b.ints([class_offset])])
        onehot = b.op("OneHot", [y, b.ints([n_out]), b.const(np.array([0.0, 1.0], np.float32))], axis=-1)
    picked = b.op("ReduceSum", [b.op("Mul", [onehot, logp])], keepdims=0)
    ce = b.op("Neg", [b.op("Div", [picked, nf])])
    dzc = b.op("Div", [b.op("Sub", [p, onehot]), nf])
    seeds: dict[str, str] = {}
    if loss == "ce":
        stab = f(0.0)
        total = ce
        seeds[logits] = dzc
    elif loss == "kl":
        zn = b.op("Slice", [logits, n, b.ints([big]), b.ints([0])], hint="z_noisy")
        logq = b.op("LogSoftmax", [zn], axis=-1)
        q = b.op("Exp", [logq])
        d = b.op("Sub", [logp, logq])
        rows = b.op("ReduceSum", [b.op("Mul", [p, d]), b.ints([1])], keepdims=1)
        stab = b.op("Div", [b.op("ReduceSum", [rows], keepdims=0), nf])
        total = b.op("Add", [ce, b.op("Mul", [stab, f(alpha)])])
        # d KL / d z_clean = p * (d - KL_row) / N ;  d KL / d z_noisy = (q - p) / N
        a_n = b.op("Div", [f(alpha), nf])
        dkc = b.op("Mul", [b.op("Mul", [p, b.op("Sub", [d, rows])]), a_n])
        dkn = b.op("Mul", [b.op("Sub", [q, p]), a_n])
        seeds[logits] = b.op("Concat", [b.op("Add", [dzc, dkc]), dkn], axis=0)
    else:
        assert embedding is not None
        hc = b.op("Slice", [embedding, b.ints([0]), n, b.ints([0])], hint="h_clean")
        hn = b.op("Slice", [embedding, n, b.ints([big]), b.ints([0])], hint="h_noisy")
        diff = b.op("Sub", [hc, hn])
        stab = b.op("Div", [b.op("ReduceSum", [b.op("Mul", [diff, diff])], keepdims=0), nf])
        total = b.op("Add", [ce, b.op("Mul", [stab, f(alpha)])])
        dhc = b.op("Mul", [diff, b.op("Div", [f(2.0 * alpha), nf])])
        seeds[embedding] = b.op("Concat", [dhc, b.op("Neg", [dhc])], axis=0)
        zeros = b.op("Mul", [dzc, f(0.0)])
        seeds[logits] = b.op("Concat", [dzc, zeros], axis=0)
    b.nodes.append(helper.make_node("Identity", [total], [LOSS], name="train/loss"))
    b.nodes.append(helper.make_node("Identity", [ce], [CE], name="train/ce"))
    b.nodes.append(helper.make_node("Identity", [stab], [STABILITY], name="train/stability"))
    return seeds


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
