"""instab: measure and reduce the instability of image classifiers across devices.

An image is *unstable* when a model is right about it in at least one environment
(device, codec, ISP, runtime) and wrong in another. See :func:`instability`.

``import instab`` is cheap: the names below load their modules (and ONNX Runtime,
onnx, Pillow, rawpy) on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_LAZY = {
    "Classifier": "instab.inference.classifier",
    "Prediction": "instab.inference.classifier",
    "InstabilityResult": "instab.metrics.instability",
    "instability": "instab.metrics.instability",
    "preprocess": "instab.inference.preprocessing",
    "decode": "instab.isp.rawfile",  # camera raw files included; other files go to _shared.decode
}
_SUBPACKAGES = ("capture", "environments", "inference", "io", "isp", "metrics", "models", "studies", "train",
                "workflow")

if TYPE_CHECKING:
    __version__: str
    from instab import capture, environments, inference, io, isp, metrics, models, studies, train, workflow
    from instab.inference.classifier import Classifier, Prediction
    from instab.inference.preprocessing import preprocess
    from instab.isp.rawfile import decode
    from instab.metrics.instability import InstabilityResult, instability


def _installed_version() -> str:
    # importlib.metadata costs ~20 ms to import: only pay it when __version__ is asked for.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("instab")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _installed_version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"instab.{name}")
    else:
        raise AttributeError(f"module 'instab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Classifier",
    "InstabilityResult",
    "Prediction",
    "__version__",
    "capture",
    "decode",
    "environments",
    "inference",
    "instability",
    "io",
    "isp",
    "metrics",
    "models",
    "preprocess",
    "studies",
    "train",
    "workflow",
]
