"""Validators shared by every layer, so that one argument means one thing with one message everywhere."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

# More threads than this never helps and, on a small machine, thread creation
# itself fails (each thread reserves its stack): refuse rather than crash.
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))


def check_threads(threads: Any, name: str = "threads") -> int:
    """``threads`` as a count of worker threads: ``None`` = all cores, else an int in ``1..MAX_THREADS``.

    Raises ``TypeError`` for anything but ``None`` or an int (bools and floats included) and
    ``ValueError`` for an int out of range, with the same message everywhere.
    """
    if threads is None:
        return os.cpu_count() or 1
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
        raise TypeError(
            f"{name}: expected None (all cores) or an int in 1..{MAX_THREADS}, got {type(threads).__name__} {threads!r}"
        )
    if not 1 <= int(threads) <= MAX_THREADS:
        raise ValueError(f"{name}: expected None (all cores) or an int in 1..{MAX_THREADS}, got {int(threads)}")
    return int(threads)


def check_seed(seed: Any, name: str = "seed", *, bits: int = 63) -> int:
    """A seed: an int in ``0..2**bits-1`` (bools and floats are refused).

    ``bits=64`` where the value goes straight to the C++ kernels' Philox key (or
    stream), which take any unsigned 64-bit value.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name}: expected an int in 0..2**{bits}-1, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2**bits:
        raise ValueError(f"{name}: expected an int in 0..2**{bits}-1, got {int(seed)}")
    return int(seed)


def check_choice(value: Any, options: Sequence[str], name: str) -> str:
    """``value`` must be one of ``options`` (strings, compared case-insensitively); returns it lower-cased."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected one of {', '.join(options)}, got {type(value).__name__} {value!r}")
    v = value.lower()
    if v not in options:
        raise ValueError(f"{name}: expected one of {', '.join(options)}, got {value!r}")
    return v


__all__ = ["MAX_THREADS", "check_choice", "check_seed", "check_threads"]
