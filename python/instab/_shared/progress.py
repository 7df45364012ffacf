"""The one progress-callback type: long-running functions report human-readable lines through it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

#: Receives one progress line (no trailing newline). ``None`` where a function takes
#: ``progress: Progress | None`` means quiet.
Progress = Callable[[str], None]


def to_stream(stream: TextIO | None = None) -> Progress:
    """A :data:`Progress` that writes each line to ``stream`` (default: stderr) and flushes."""

    def write(line: str) -> None:
        out = stream if stream is not None else sys.stderr
        out.write(line + "\n")
        out.flush()

    return write


__all__ = ["Progress", "to_stream"]
