"""The knobs of ``instab mitigate``: :class:`MitigateOptions`, one place for their defaults and checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from instab._shared.validation import check_seed, check_threads
from instab.studies.mitigation.config import STABILITY_LOSSES
from instab.train.optim import OPTIMIZERS

#: The two devices of the study's protocol: x is seen through the first, x' through the second.
DEFAULT_DEVICE, DEFAULT_PAIR_DEVICE = "device:phone-heif", "device:phone-vivid"
#: Noise schemes of ``--noise`` (see :mod:`instab.studies.mitigation.noise`); ``none`` = plain fine-tune only.
NOISE_KINDS = ("two-images", "subsample", "distortion", "gaussian", "devices", "none")


def _alpha_grid() -> dict[str, tuple[float, ...]]:
    # Chosen on validation images when --alpha is not given; one decade apart around what worked.
    return {"kl": (1.0, 3.0, 10.0), "embedding": (0.01, 0.03, 0.1)}


def device_text(text: str, name: str) -> str:
    """An environment text; a bare profile name (``phone-heif``) means ``device:phone-heif``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name}: expected an environment text such as device:phone-heif, got {text!r}")
    text = text.strip()
    return text if ":" in text else f"device:{text}"


@dataclass
class MitigateOptions:
    """What ``instab mitigate`` trains and how (defaults: the last layers, paired devices, distillation).

    ``distill`` mixes the start model's own probabilities on x into the targets
    (``(1 - distill) * one_hot(y) + distill * p_start(x)``): it keeps what the model
    knows of the classes that are not in the training images (forgetting control).
    """

    device: str = DEFAULT_DEVICE
    pair_device: str = DEFAULT_PAIR_DEVICE
    loss: str = "kl"
    noise: str = "two-images"
    alpha: float | None = None  # None: chosen from ``alphas[loss]`` on the validation images
    alphas: dict[str, tuple[float, ...]] = field(default_factory=_alpha_grid)
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    optimizer: str = "adam"
    # The last two inverted-residual blocks, the 1x1 conv and the classifier of a MobileNetV2 (the 7x7 stage): the
    # frozen part runs once per view, so the search over alpha fits in minutes; "all" trains every layer (slower,
    # and on 10 classes it forgets more of the others; see docs/mitigation.md).
    trainable: str = "last:8"
    distill: float = 0.5
    max_retention_drop: float = 0.02  # alpha is chosen among models that keep retention within this of the input's
    val_fraction: float = 0.1
    eval_fraction: float = 0.3
    calibration: int = 128  # training views (half from each device) that calibrate the int8 copies
    int8: bool = True  # write and measure int8 copies (re-quantized) of every model
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        self.device = device_text(self.device, "device")
        self.pair_device = device_text(self.pair_device, "pair_device")
        self.check()

    def check(self) -> None:
        """Raise ValueError (TypeError for a wrong type) naming the first knob out of range."""
        check_threads(self.threads)
        check_seed(self.seed)
        if self.loss not in STABILITY_LOSSES:
            raise ValueError(f"loss: expected one of {STABILITY_LOSSES}, got {self.loss!r}")
        kind = self.noise.split(":")[0] if isinstance(self.noise, str) else None
        if kind not in NOISE_KINDS:
            raise ValueError(f"noise: expected one of {NOISE_KINDS} (with options, e.g. gaussian:sigma=0.05), "
                             f"got {self.noise!r}")
        if self.alpha is not None and (not np.isfinite(self.alpha) or self.alpha <= 0):
            raise ValueError(f"alpha: expected a positive number, got {self.alpha!r}")
        grid = self.alphas.get(self.loss, ())
        if self.alpha is None and (not grid or any(not np.isfinite(a) or a <= 0 for a in grid)):
            raise ValueError(f"alphas[{self.loss!r}]: expected positive values, got {grid!r}")
        for name in ("epochs", "batch_size", "calibration"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if not np.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0.0 <= self.max_retention_drop <= 1.0:
            raise ValueError(f"max_retention_drop: expected a fraction in [0, 1], got {self.max_retention_drop!r}")
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill: expected a weight in [0, 1], got {self.distill!r}")
        if self.trainable != "all" and not str(self.trainable).startswith("last:"):
            raise ValueError(f"trainable: expected 'all' or 'last:N', got {self.trainable!r}")


__all__ = ["DEFAULT_DEVICE", "DEFAULT_PAIR_DEVICE", "NOISE_KINDS", "MitigateOptions", "device_text"]
