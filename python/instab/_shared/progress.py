"""The one progress-callback type: long-running functions report human-readable lines through it.

Library code only reports; the command line decides how to draw (a bar on a terminal,
periodic plain lines otherwise, nothing under ``--quiet``). A line that counts work
is a :class:`Count`: still a ``str`` (so ``print`` or ``list.append`` are valid
:data:`Progress` callbacks), that also carries ``what``, ``done``, ``total``,
``unit`` and ``detail`` for a progress bar.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

#: Receives one progress line (no trailing newline), a :class:`Count` when it counts work.
#: ``None`` where a function takes ``progress: Progress | None`` means quiet.
Progress = Callable[[str], None]


class Count(str):
    """A progress line that counts: ``"<what> <done>/<total> (<P>%)[ <detail>]"`` with the numbers attached.

    Parameters
    ----------
    what
        What is being counted, e.g. ``"scored"`` or ``"simulate"`` (the bar's label).
    done, total
        Units done so far and in all (``total`` >= 1).
    unit
        The unit's name, plural (``"images"``): a bar's rate is shown in it.
    detail
        Extra text after the counts (e.g. a loss or a rate).
    """

    what: str
    done: int
    total: int
    unit: str
    detail: str

    def __new__(cls, what: str, done: int, total: int, unit: str = "items", detail: str = "") -> Count:
        total = max(int(total), 1)
        text = f"{what} {int(done)}/{total} ({100 * done / total:.0f}%)" + (f" {detail}" if detail else "")
        line = super().__new__(cls, text)
        line.what, line.done, line.total, line.unit, line.detail = what, int(done), total, unit, detail
        return line


def report(progress: Progress | None, what: str, done: int, total: int, unit: str = "items",
           detail: str = "") -> None:
    """Send ``Count(what, done, total, unit, detail)`` to ``progress`` (nothing when it is None)."""
    if progress is not None:
        progress(Count(what, done, total, unit, detail))


def to_stream(stream: TextIO | None = None) -> Progress:
    """A :data:`Progress` that writes each line to ``stream`` (default: stderr) and flushes."""

    def write(line: str) -> None:
        out = stream if stream is not None else sys.stderr
        out.write(line + "\n")
        out.flush()

    return write


__all__ = ["Count", "Progress", "report", "to_stream"]
