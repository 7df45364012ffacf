"""``require_litert()``: LiteRT tests skip without ai-edge-litert, except under CI (which installs it)."""

from __future__ import annotations

import importlib.util
import os

import pytest


def require_litert() -> None:
    """Skip the calling test when ai-edge-litert is missing; fail instead when CI is set."""
    if importlib.util.find_spec("ai_edge_litert") is not None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("ai-edge-litert is missing: CI installs instab[test], which includes instab[litert]")
    pytest.skip("ai-edge-litert not installed (pip install 'instab[litert]')")


__all__ = ["require_litert"]
