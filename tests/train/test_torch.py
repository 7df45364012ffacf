"""Optional oracle: gradients and optimizer steps match PyTorch on the same weights and inputs."""

from __future__ import annotations

import numpy as np
import pytest

from instab.train import Optimizer, build_training_graph
from instab.train.dataset import make_perturbation
from instab.train.graph import find_logits
from instab.train.loop import Trainer
from tests._support.training import tiny_classifier, tiny_data

# Torch is optional: skip the module without it (ruff allows imports after a bare importorskip).
pytest.importorskip("torch")

import torch

from tests._support.torch_oracle import TorchGraph, stability_loss

IMAGES, LABELS = tiny_data(16, seed=4)


def torch_optimizer(opt: Optimizer, params, lr):
    if opt.kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    cls = torch.optim.Adam if opt.kind == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, weight_decay=opt.weight_decay)


@pytest.mark.parametrize(
    "loss,opt,trainable",
    [
        ("kl", Optimizer("sgd", momentum=0.9, weight_decay=1e-3), "all"),
        ("kl", Optimizer("adam", weight_decay=1e-3), "all"),
        ("embedding", Optimizer("adamw", weight_decay=1e-2), "all"),
        ("ce", Optimizer("sgd", momentum=0.5), "last:2"),
        ("embedding", Optimizer("sgd"), "embedding"),
    ],
)
def test_steps_match_torch(loss, opt, trainable):
    torch.manual_seed(0)
    base = tiny_classifier()
    tg = build_training_graph(base, loss=loss, alpha=0.4, optimizer=opt, trainable=trainable)
    tr = Trainer(tg, threads=1)
    outputs = [find_logits(tg.inference)] + (["embedding"] if loss == "embedding" else [])
    tm = TorchGraph(tg.inference, tg.params, outputs)
    lr = 0.05 if opt.kind == "sgd" else 1e-2
    topt = torch_optimizer(opt, [tm.params[p] for p in tg.params], lr)
    noise = make_perturbation("noise:gaussian,sigma=0.2")
    for step in range(3):
        x, y = IMAGES[step * 5 : step * 5 + 5], LABELS[step * 5 : step * 5 + 5]
        xn = noise(x, 0, step * 5) if loss != "ce" else None
        ours = tr.step(x, xn, y, lr)
        batch = np.concatenate([x, xn]) if xn is not None else x
        topt.zero_grad()
        outs = tm(torch.from_numpy(batch))
        ref = stability_loss(outs[0], torch.from_numpy(y), 0.4, loss, outs[1] if len(outs) > 1 else None)
        ref.backward()
        topt.step()
        assert ours.loss == pytest.approx(float(ref.detach()), rel=1e-4, abs=1e-5)
        # Adam normalises each update, so round-off in a near-zero gradient moves a weight by up to ~1% of lr.
        atol = 1e-5 if opt.kind == "sgd" else 1e-2 * lr
        for p, v in tr.parameters().items():
            np.testing.assert_allclose(v, tm.params[p].detach().numpy(), rtol=1e-3, atol=atol, err_msg=p)
