"""Fixtures shared by tests/ and benchmarks/: where the real data and models live.

Tests that need ../shared skip with a clear reason when it is absent (a user's
fresh checkout), but fail under CI (CI=true), where it must be present.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent / "shared"

# Built-in model names ("mobilenet-v2-int8-st", ...) resolve through INSTAB_MODELS_DIR,
# as they would for a user of an installed package.
if (SHARED / "models").is_dir():
    os.environ.setdefault("INSTAB_MODELS_DIR", str(SHARED / "models"))


def _require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{path} is missing: CI must run with ../shared beside the repository")
        pytest.skip(f"{path} not found: these tests need ../shared (data and models) beside the repository")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def samples_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "data" / "imagenet-samples")


@pytest.fixture(scope="session")
def imagenette_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "data" / "imagenette")


@pytest.fixture(scope="session")
def models_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "models")


@pytest.fixture(scope="session")
def raw_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "data" / "raw")
