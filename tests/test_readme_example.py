"""The README runs as written: its Python example, and the set-up command that CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def test_python_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    # no skip without scikit-image: the test extra installs instab[demo], whose photos the example uses
    blocks = _blocks("python")
    assert blocks, "README.md has no ```python block"
    for i, code in enumerate(blocks):
        # a fresh namespace per block, as a reader pasting it into a new interpreter
        exec(compile(code, f"README.md python block {i + 1}", "exec"), {"__name__": "__readme__"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "0.5 2 4"  # the value the first block's comment states
    rate = float(lines[-1])  # the real model on the demo's photos: a share of two images
    assert rate in (0.0, 0.5, 1.0)


def test_ci_runs_the_readme_first_command() -> None:
    setup = _blocks("bash")[0]
    first = setup.splitlines()[0].split("#")[0].strip()
    assert "instab demo" in first
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert first in [line.strip() for line in ci], f".ci/run must run the README's first command: {first}"
