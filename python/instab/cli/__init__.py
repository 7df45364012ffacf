"""The ``instab`` command line, one module per command group."""

from __future__ import annotations

from instab.cli.main import main

__all__ = ["main"]
