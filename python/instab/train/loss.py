"""The loss of the training graph and its gradient with respect to the logits (and embedding).

``CE(f(x), y) + alpha * Ls(x, x')`` with Ls the KL divergence ``KL(p(x) || p(x'))``
(``loss="kl"``), the mean squared L2 distance between embeddings
(``loss="embedding"``), or nothing (``loss="ce"``). The gradients are written out
in closed form (they seed :func:`instab.train.autodiff.backward`).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from instab.train.builder import NodeBuilder

# Names of the loss's input and outputs in the training graph.
LABELS = "labels"
LOSS, CE, STABILITY = "loss", "ce", "stability"


def loss_nodes(
    b: NodeBuilder, loss: str, alpha: float, logits: str, embedding: str | None, n_out: int, class_offset: int,
    soft_targets: bool = False,
) -> dict[str, str]:
    """Append the loss and the gradient of the loss w.r.t. the logits (and embedding); return the seeds.

    The seeds map ``logits`` (and ``embedding``) to d(loss)/d(tensor), for
    :func:`instab.train.autodiff.backward`. The rows of ``logits`` are the clean
    batch followed by the perturbed one (only the clean one for ``loss="ce"``);
    the batch size is read from the ``labels`` input at run time.
    """

    def f(v: float) -> str:
        return b.const(np.float32(v))

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


__all__ = [
    "CE",
    "LABELS",
    "LOSS",
    "STABILITY",
    "loss_nodes",
]
