"""``instab mitigate``: turn a model into one whose answers change less across devices, and show it.

:func:`run_mitigate` splits the user's labelled images per class into training,
validation and evaluation parts, sees them through two devices (or takes real
paired photos), fine-tunes the model twice on the same data and schedule -- plainly,
and with the stability loss between the two views -- with targets that mix the
labels with the start model's own probabilities (so it keeps the classes it is not
trained on), chooses alpha on the validation part, re-quantizes every model to
int8, and measures instability between the two devices, across the built-in and
two held-out devices, accuracy per device and retention on other classes.

Modules: ``options`` (the knobs), ``inputs`` (loading and checks), ``split`` (per-class
split), ``views`` (images through devices), ``tuning`` (the fine-tunes and alpha),
``evaluate`` (the measures), ``quantized`` (int8), ``result`` and ``report`` (files),
``run`` (:func:`run_mitigate`). The study that compares every loss and noise scheme is
:mod:`instab.studies.mitigation` (``instab characterize --experiment mitigation``).
"""

from __future__ import annotations

from instab.studies.mitigate.options import MitigateOptions
from instab.studies.mitigate.result import MitigateResult
from instab.studies.mitigate.run import run_mitigate

__all__ = ["MitigateOptions", "MitigateResult", "run_mitigate"]
