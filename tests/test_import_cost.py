"""``import instab`` stays cheap: heavy dependencies load on first use of a name that needs them.

Each check runs in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Imported by the names that need them, never by ``import instab``.
HEAVY = ("onnxruntime", "onnx", "matplotlib", "rawpy", "pillow_heif", "PIL")


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_instab_loads_no_heavy_dependency() -> None:
    found = _run(
        f"""
        import json, sys
        import instab
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
        """
    )
    assert found == [], f"import instab imported {found}"


def test_version_is_the_installed_distribution_version() -> None:
    got = _run(
        """
        import json
        from importlib.metadata import version
        import instab
        print(json.dumps([instab.__version__, version("instab")]))
        """
    )
    assert got[0] == got[1]


def test_lazy_instability_works_and_stays_light() -> None:
    got = _run(
        f"""
        import json, sys
        import instab
        r = instab.instability([[[7], [7], [3]], [[2], [2], [2]]], [7, 5])
        print(json.dumps([r.rate, r.n_unstable, sorted(m for m in {HEAVY!r} if m in sys.modules)]))
        """
    )
    assert got == [0.5, 1, []]
