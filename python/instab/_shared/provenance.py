"""Provenance: what produced a result (versions, model hashes, seeds, command line, times, host).

Every results store (its ``meta`` table) and every ``summary.json`` or study JSON
carries one :func:`record`, so a number can be traced back to the software and
the inputs that made it.
"""

from __future__ import annotations

import hashlib
import platform
import socket
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np


def utc_now() -> str:
    """The current time, UTC, ISO 8601 to the second (``2024-05-01T12:00:00+00:00``)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


def _version(*distributions: str) -> str | None:
    for dist in distributions:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def versions() -> dict[str, str | None]:
    """Versions of instab, ONNX Runtime (any of its builds), numpy and Python (None: not installed)."""
    return {
        "instab": _version("instab"),
        # read from the installed metadata: importing onnxruntime only for its version would be slow
        "onnxruntime": _version("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def record(
    started: str,
    *,
    models: Mapping[str, str | None] | None = None,
    seeds: Mapping[str, Any] | None = None,
    argv: list[str] | None = None,
    finished: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One provenance record (plain JSON types).

    Parameters
    ----------
    started
        When the run started (:func:`utc_now`).
    models
        Model name -> content hash (SHA-256) of every model the result depends on
        (None for one that could no longer be loaded to hash it).
    seeds
        The seeds of the run, by option name.
    argv
        The command line (default: ``sys.argv``).
    finished
        When it ended (default: now).
    extra
        More fields, e.g. counts of what the run did.
    """
    return {
        **versions(),
        "models": dict(models or {}),
        "seeds": dict(seeds or {}),
        "argv": list(sys.argv if argv is None else argv),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "started": started,
        "finished": utc_now() if finished is None else finished,
        **extra,
    }


__all__ = ["record", "sha256_hex", "utc_now", "versions"]
