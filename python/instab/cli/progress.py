"""How the command line draws the library's progress reports (:data:`instab._shared.progress.Progress`).

On a terminal with tqdm installed: a bar with rate and ETA on stderr. Otherwise (a pipe,
a log file, no tqdm): a plain line at most every :data:`INTERVAL` seconds, plus the
last one of a count that took that long. Under ``--quiet``: nothing. Lines that do not
count (notes) are always written, above the bar.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from instab._shared.progress import Count, Progress

#: Seconds between two plain progress lines.
INTERVAL = 5.0


def _clock(seconds: float) -> str:
    """``75`` -> ``"1:15"``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Reporter:
    """A :data:`Progress` for the command line; :meth:`close` it (or use it as a context manager).

    Parameters
    ----------
    stream
        Where to write (default: stderr at the time of each write).
    bar
        Draw a tqdm bar; None: when the stream is a terminal and tqdm is installed.
    interval
        Seconds between plain lines (default: :data:`INTERVAL`).
    """

    def __init__(self, stream: TextIO | None = None, *, bar: bool | None = None,
                 interval: float | None = None) -> None:
        self._stream = stream
        self.bar = _can_draw(self.stream) if bar is None else bar
        self.interval = INTERVAL if interval is None else interval
        self._key: tuple[str, int] | None = None  # (what, total) of the count in progress
        self._tqdm: Any = None
        # a count starts at the previous report (or at the reporter's start): its first unit began then
        self._mark = self._started = self._last = time.monotonic()
        self._printed = False  # a plain line of the current count was written

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def __call__(self, line: str) -> None:
        if isinstance(line, Count):
            self._count(line)
        elif self._tqdm is not None:
            self._tqdm.write(line, file=self.stream)
        else:
            self._write(line)

    def _count(self, c: Count) -> None:
        now = time.monotonic()
        self._mark, previous = now, self._mark
        if (c.what, c.total) != self._key:
            self._end_count()
            self._key, self._started, self._last, self._printed = (c.what, c.total), previous, previous, False
            if self.bar:
                from tqdm import tqdm  # optional dependency: only for drawing a bar

                self._tqdm = tqdm(total=c.total, desc=c.what, unit=f" {c.unit}", file=self.stream,
                                  dynamic_ncols=True)
        if self._tqdm is not None:
            self._tqdm.update(c.done - self._tqdm.n)
            if c.detail:
                self._tqdm.set_postfix_str(c.detail, refresh=False)
            return
        finished = c.done >= c.total
        if now - self._last >= self.interval or (finished and self._printed):
            elapsed = now - self._started
            timing = f"{_clock(elapsed)} elapsed"
            if 0 < c.done < c.total:
                timing += f", ETA {_clock(elapsed * (c.total - c.done) / c.done)}"
            self._write(f"{c} [{timing}]")
            self._last, self._printed = now, True

    def _end_count(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        self._key = None

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar in progress (its last state stays on screen)."""
        self._end_count()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _can_draw(stream: TextIO) -> bool:
    """A bar only on a terminal, and only with tqdm installed."""
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
    return importlib.util.find_spec("tqdm") is not None  # optional dependency


@contextmanager
def progress_for(quiet: bool = False) -> Iterator[Progress | None]:
    """The progress of one command: a :class:`Reporter` on stderr, or None under ``--quiet``.

    The reporter is closed on the way out, also on Ctrl-C or an error, so that the
    bar's line is ended before the command's last message.
    """
    if quiet:
        yield None
        return
    with Reporter() as reporter:
        yield reporter


__all__ = ["INTERVAL", "Reporter", "progress_for"]
