"""The result protocol every study returns: the CLI prints ``to_text()`` and writes ``to_dict()`` as JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class StudyResult(Protocol):
    """What ``instab characterize --experiment NAME`` gets back from a study."""

    def to_text(self) -> str:
        """The human-readable table(s), as printed."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Everything measured, JSON-serialisable."""
        ...


def to_plain(obj: Any) -> Any:
    """``obj`` with dataclasses, tuples and numpy values turned into JSON types; NaN and inf become None.

    JSON has no NaN: an undefined rate (e.g. instability over fewer than two
    environments) is written as ``null``.
    """
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


__all__ = ["StudyResult", "to_plain"]
