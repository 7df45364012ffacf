"""instab: measure and reduce the instability of image classifiers across devices.

An image is *unstable* when a model is right about it in at least one environment
(device, codec, ISP, runtime) and wrong in another. See :func:`instability`.
"""

from instab import environments, models
from instab._decode import decode
from instab.inference import Classifier, Prediction
from instab.metrics import InstabilityResult, instability
from instab.preprocessing import preprocess

__version__ = "0.1.0"

__all__ = [
    "Classifier",
    "InstabilityResult",
    "Prediction",
    "__version__",
    "decode",
    "environments",
    "instability",
    "models",
    "preprocess",
]
