"""The study's knobs: :class:`MitigationConfig` is the one source of their defaults and help texts.

``instab.cli.mitigation`` builds the command-line options from these fields (name,
type, default, and the ``help`` of each field's metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instab._shared.validation import check_threads
from instab.train.optim import OPTIMIZERS

#: The stability losses the study compares (plain fine-tuning, loss ``ce``, always runs as its own row).
STABILITY_LOSSES = ("kl", "embedding")
#: The noise schemes the study trains with by default (see :mod:`instab.studies.mitigation.noise`).
DEFAULT_SCHEMES = ("gaussian", "distortion", "two-images", "subsample:n=10", "devices")
#: The start model: the shared int8 MobileNetV2, dequantized before training.
DEFAULT_MODEL = "mobilenet-v2-int8-st"
#: Which models are re-quantized to int8: none, the baseline and each loss's most stable model, or all.
INT8_CHOICES = ("none", "best", "all")


def _knob(default: Any, help_text: str, **cli: Any) -> Any:
    """A field with a default and its help text (``cli`` adds e.g. ``choices`` for the command line)."""
    return field(default=default, metadata={"help": help_text, **cli})


def _default_alphas() -> dict[str, tuple[float, ...]]:
    return {"kl": (1.0, 3.0, 10.0), "embedding": (0.003, 0.01, 0.03)}


@dataclass
class MitigationConfig:
    """Knobs of the study (defaults sized for a 2-core machine; see docs/mitigation.md).

    Each field's ``metadata["help"]`` says what it does; a boolean's help says what
    ``True`` adds (the command line offers ``--no-NAME``).
    """

    trainable: str = _knob(
        "last:2", "layers to fine-tune: last:N (the frozen part runs once per image) or all "
        "(the whole network, every step; slower, much stronger)")
    epochs: int = _knob(3, "passes over the training images per fine-tuning")
    batch_size: int = _knob(32, "images per training step")
    lr: float = _knob(5e-5, "learning rate")
    optimizer: str = _knob("adam", "optimizer of every fine-tuning", choices=OPTIMIZERS)
    draws: int = _knob(3, "noise draws of x' per image (epoch e uses draw e mod draws)")
    losses: tuple[str, ...] = _knob(STABILITY_LOSSES, "comma-separated stability losses: kl,embedding")
    schemes: tuple[str, ...] = _knob(
        DEFAULT_SCHEMES, "noise schemes separated by ',' (or ';' when one is env:TEXT with commas)")
    alphas: dict[str, tuple[float, ...]] = field(
        default_factory=_default_alphas, metadata={"help": "alpha grid for the {key} loss"})
    sigmas: tuple[float, ...] = _knob((0.02, 0.08), "sigma grid for Gaussian noise")
    val_fraction: float = _knob(0.2, "share of training images held out for the alpha/sigma search")
    subsample_n: int = _knob(10, "photos per class of the subsample scheme when its text gives no n=")
    label_free: bool = _knob(True, "add the label-free rows")
    int8: str = _knob("best", "which models to re-quantize to int8", choices=INT8_CHOICES)
    calibration: int = _knob(64, "training views that calibrate the int8 re-quantization")
    raw: bool = _knob(True, "add the consistent-raw-pipeline rows")
    top_k: int = _knob(3, "k of the top-k rows")
    threads: int | None = _knob(None, "ONNX Runtime and environment threads (default all cores)")

    def __post_init__(self) -> None:
        check_threads(self.threads)  # like every function taking threads (check() checks it again: fields can change)

    def check(self) -> None:
        """Raise ValueError (TypeError for a bad ``threads``) for any knob out of range."""
        if self.epochs < 1 or self.batch_size < 1 or self.draws < 1:
            raise ValueError("epochs, batch_size and draws must be >= 1")
        if not np.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr}")
        bad = [x for x in self.losses if x not in STABILITY_LOSSES]
        if bad:
            raise ValueError(f"losses: unknown {bad} (known: {STABILITY_LOSSES})")
        for loss in self.losses:
            a = self.alphas.get(loss)
            if not a or any((not np.isfinite(v)) or v <= 0 for v in a):
                raise ValueError(f"alphas[{loss!r}]: expected positive values, got {a}")
        if any((not np.isfinite(s)) or s <= 0 for s in self.sigmas) or not self.sigmas:
            raise ValueError(f"sigmas: expected positive values, got {self.sigmas}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a fraction in [0, 1), got {self.val_fraction}")
        if self.int8 not in INT8_CHOICES:
            raise ValueError(f"int8: expected none, best or all, got {self.int8!r}")
        if self.calibration < 1 or self.subsample_n < 1 or self.top_k < 2:
            raise ValueError("calibration and subsample_n must be >= 1, top_k >= 2")
        if self.threads is not None:
            check_threads(self.threads)


__all__ = ["DEFAULT_MODEL", "DEFAULT_SCHEMES", "INT8_CHOICES", "STABILITY_LOSSES", "MitigationConfig"]
