"""What the browser tests share: Debian's chromium driven by Playwright for Python, and where screenshots go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Debian's chromium (Playwright's own browser download needs the internet).
CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def sync_playwright_or_skip():
    """Playwright's ``sync_playwright``, or a skip (a failure under CI) saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright  # optional: only the browser tests need it
    except ImportError:
        if IN_CI:
            pytest.fail("playwright is not installed: CI must run the browser tests (pip install playwright)")
        pytest.skip("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)")
    return sync_playwright


def artifacts_dir(tmp_path: Path) -> Path:
    """``$INSTAB_ARTIFACTS`` (CI keeps the screenshots there), else ``tmp_path``; created."""
    folder = Path(os.environ.get("INSTAB_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
