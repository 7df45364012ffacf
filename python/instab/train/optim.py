"""Optimizers as ONNX nodes: SGD with momentum and Adam, each update emitted into the training graph.

The update rules follow torch.optim.SGD (dampening 0, no Nesterov) and
torch.optim.Adam / AdamW, so a step matches PyTorch on the same gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instab.train.builder import NodeBuilder

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class Optimizer:
    """Optimizer settings. ``weight_decay`` is L2 added to the gradient (decoupled for ``adamw``)."""

    kind: str = "sgd"
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {self.kind!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1), got {self.momentum}")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError(f"beta1, beta2: expected values in [0, 1), got {self.beta1}, {self.beta2}")
        if self.eps <= 0 or self.weight_decay < 0:
            raise ValueError(f"eps must be > 0 and weight_decay >= 0, got {self.eps}, {self.weight_decay}")

    def slots(self) -> tuple[str, ...]:
        """Names of the per-parameter state tensors."""
        return ("velocity",) if self.kind == "sgd" else ("exp_avg", "exp_avg_sq")

    def uses_step(self) -> bool:
        return self.kind != "sgd"

    def update(
        self, b: NodeBuilder, grads: dict[str, str], slots: dict[str, list[str]], lr: str, step: str | None
    ) -> dict[str, str]:
        """Append the update of every parameter in ``grads`` (state tensors in ``slots``).

        Returns {parameter or state name: tensor holding its new value}.
        """
        scalars = self._scalars(b, lr, step) if self.kind != "sgd" else None
        out: dict[str, str] = {}
        for p, g in grads.items():
            new_p, new_s = self._emit(b, p, g, slots[p], lr, scalars)
            out[p] = new_p
            out.update(zip(slots[p], new_s, strict=True))
        return out

    def _emit(
        self, b: NodeBuilder, param: str, grad: str, state: list[str], lr: str, scalars: tuple[str, str] | None
    ) -> tuple[str, list[str]]:
        """Append the update of one parameter; return (new parameter, new state tensors)."""

        def f(v: float) -> str:
            return b.const(np.float32(v))

        g = grad
        if self.weight_decay and self.kind != "adamw":
            g = b.op("Add", [g, b.op("Mul", [param, f(self.weight_decay)])])
        if self.kind == "sgd":
            (vel,) = state
            v = b.op("Add", [b.op("Mul", [vel, f(self.momentum)]), g]) if self.momentum else g
            new = b.op("Sub", [param, b.op("Mul", [v, lr])])
            return new, [v if self.momentum else vel]
        m_old, v_old = state
        m = b.op("Add", [b.op("Mul", [m_old, f(self.beta1)]), b.op("Mul", [g, f(1 - self.beta1)])])
        v = b.op("Add", [b.op("Mul", [v_old, f(self.beta2)]), b.op("Mul", [b.op("Mul", [g, g]), f(1 - self.beta2)])])
        assert scalars is not None
        step_size, sqrt_bc2 = scalars
        denom = b.op("Add", [b.op("Div", [b.op("Sqrt", [v]), sqrt_bc2]), f(self.eps)])
        p = param
        if self.weight_decay and self.kind == "adamw":
            p = b.op("Mul", [p, b.op("Sub", [f(1.0), b.op("Mul", [lr, f(self.weight_decay)])])])
        new = b.op("Sub", [p, b.op("Mul", [b.op("Div", [m, denom]), step_size])])
        return new, [m, v]

    def _scalars(self, b: NodeBuilder, lr: str, step: str | None) -> tuple[str, str]:
        """lr / (1 - beta1^t) and sqrt(1 - beta2^t): Adam's bias corrections, shared by all parameters."""
        if step is None:
            raise ValueError(f"optimizer {self.kind}: needs the step counter input")

        def f(v: float) -> str:
            return b.const(np.float32(v))

        bc1 = b.op("Sub", [f(1.0), b.op("Pow", [f(self.beta1), step])])
        bc2 = b.op("Sub", [f(1.0), b.op("Pow", [f(self.beta2), step])])
        return b.op("Div", [lr, bc1]), b.op("Sqrt", [bc2])

__all__ = [
    "OPTIMIZERS",
    "Optimizer",
]
