"""The result protocol every study returns: the CLI prints ``to_text()`` and writes ``to_dict()`` as JSON."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class StudyResult(Protocol):
    """What ``instab characterize --experiment NAME`` gets back from a study."""

    def to_text(self) -> str:
        """The human-readable table(s), as printed."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Everything measured, JSON-serialisable."""
        ...


__all__ = ["StudyResult"]
