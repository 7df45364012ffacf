"""Access to the compiled core, with an error that says how to build it."""

from __future__ import annotations

try:
    from instab import _core as core
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "instab's compiled core (instab._core) could not be imported: "
        f"{exc}. Build and install it from the repository root with "
        "`pip install .` (or `pip install --no-build-isolation -e .` for development; "
        "this needs a C++17 compiler, cmake, scikit-build-core and pybind11)."
    ) from exc

__all__ = ["core"]
