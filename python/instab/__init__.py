"""instab: measure and reduce the instability of image classifiers across devices.

An image is *unstable* when a model is right about it in at least one environment
(device, codec, ISP, runtime) and wrong in another. See :func:`instability`.
"""

from instab.metrics import InstabilityResult, instability

__version__ = "0.1.0"

__all__ = ["InstabilityResult", "instability", "__version__"]

from instab.preprocessing import preprocess  # noqa: E402

__all__ += ["preprocess"]

from instab import models  # noqa: E402
from instab.inference import Classifier, Prediction  # noqa: E402

__all__ += ["models", "Classifier", "Prediction"]
