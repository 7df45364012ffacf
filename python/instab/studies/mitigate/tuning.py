"""The two fine-tunings of ``instab mitigate`` (plain and stabilized) on the same data and schedule, and the
choice of alpha on the validation images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from instab.studies.mitigation.finetune import FineTuner


@dataclass
class Pairs:
    """Training features: x (the first device's view) and x' per noise draw, with the soft targets."""

    x: np.ndarray | list[np.ndarray]  # features of x, or of x per draw (devices scheme)
    noisy: list[np.ndarray]  # features of x' per draw (empty for --noise none)
    targets: np.ndarray  # float32 [n, classes]: labels mixed with the start model's probabilities

    def rows(self, idx: np.ndarray) -> Pairs:
        """The pairs of rows ``idx``."""
        x = [v[idx] for v in self.x] if isinstance(self.x, list) else self.x[idx]
        return Pairs(x, [v[idx] for v in self.noisy], self.targets[idx])


def soft_targets(tuner: FineTuner, x: np.ndarray, labels: np.ndarray, distill: float) -> np.ndarray:
    """``(1 - distill) * one_hot(labels) + distill * p_start(x)``: the targets that keep what the start model
    knows of every other class (distillation, as in learning without forgetting)."""
    one_hot = np.zeros((len(labels), tuner.num_classes), np.float32)
    one_hot[np.arange(len(labels)), labels] = 1.0
    if distill == 0:
        return one_hot
    return np.asarray((1.0 - distill) * one_hot + distill * tuner.soft_targets(x), dtype=np.float32)


def fit_plain(tuner: FineTuner, pairs: Pairs) -> onnx.ModelProto:
    """The plain fine-tune: the same targets and schedule, no stability term (the control)."""
    x = pairs.x[0] if isinstance(pairs.x, list) else pairs.x
    return tuner.fit("ce", 0.0, x, pairs.targets, None)


def fit_stable(tuner: FineTuner, loss: str, alpha: float, pairs: Pairs) -> onnx.ModelProto:
    """The stabilized fine-tune: cross-entropy on x plus ``alpha`` times the stability loss between x and x'."""
    return tuner.fit(loss, alpha, pairs.x, pairs.targets, pairs.noisy)


def choose_alpha(tuner: FineTuner, loss: str, grid: tuple[float, ...], fit: Pairs,
                 score: Callable[[onnx.ModelProto], dict[str, Any]], log: Callable[[str], None],
                 keep: dict[str, onnx.ModelProto],
                 max_retention_drop: float = 0.02) -> tuple[float, list[dict[str, Any]]]:
    """The alpha of ``grid`` whose model, trained on ``fit``, scores best on validation.

    ``score(head)`` returns the validation ``instability``, ``accuracy`` and
    ``retention`` (top-1 on held-back retention images, or None). A model's score is
    its instability plus any accuracy it loses against the plain fine-tune on the same
    rows; a model that forgets more than ``max_retention_drop`` of the start model's
    retention accuracy is not chosen (when every one does, the one that keeps the most
    retention is). The plain model and the chosen one are kept in ``keep``
    (``"plain"``, ``"stable"``): they are the run's results, not retrained.
    """
    start = score(tuner.head0)
    keep["plain"] = fit_plain(tuner, fit)
    plain = score(keep["plain"])
    records = [{"alpha": None, "model": "input", **start}, {"alpha": 0.0, "model": "plain", **plain}]
    log(f"  validation: input {_line(start)}; plain fine-tune {_line(plain)}")
    heads = {}
    for alpha in sorted(grid):
        heads[alpha] = fit_stable(tuner, loss, alpha, fit)
        m = score(heads[alpha])
        value = m["instability"] + max(0.0, plain["accuracy"] - m["accuracy"])
        allowed = m["retention"] is None or m["retention"] >= start["retention"] - max_retention_drop
        records.append({"alpha": alpha, "model": "stable", **m, "score": value, "allowed": allowed})
        log(f"  validation, {loss} alpha={alpha:g}: {_line(m)}{'' if allowed else ' (forgets too much)'}")
    stable = records[2:]
    passing = [r for r in stable if r["allowed"]]
    # Among those that keep retention, the best score; when none does, the one that keeps the most (then score).
    best = (min(passing, key=lambda r: (r["score"], r["alpha"])) if passing else
            min(stable, key=lambda r: (-r["retention"], r["score"], r["alpha"])))
    keep["stable"] = heads[best["alpha"]]
    return best["alpha"], records


def _line(m: dict[str, Any]) -> str:
    ret = "" if m["retention"] is None else f", retention {m['retention']:.4f}"
    return f"instability {m['instability']:.4f}, accuracy {m['accuracy']:.4f}{ret}"


__all__ = ["Pairs", "choose_alpha", "fit_plain", "fit_stable", "soft_targets"]
