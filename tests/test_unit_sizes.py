"""Small units in every layer (issue 12): modules under 500 lines, function code under 100 lines.

Also: a function-local import says why it is local (an optional or heavy
dependency, or a cycle) in a comment on its line or the line above.

Regression: ``train/autodiff.py`` had 578 lines, ``build_training_graph`` 132
lines of code, ``isp.develop`` and ``instability`` over 100 lines in all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import instab

ROOT = Path(instab.__file__).parent
LAYERS = ("_shared", "metrics", "models", "inference", "isp", "environments", "io", "workflow", "capture", "train",
          "studies", "cli")
MAX_MODULE_LINES = 500
MAX_FUNCTION_CODE_LINES = 100  # without the docstring: numpydoc examples may run long
MAX_STEP_LINES = 60  # the named steps of the training-graph build


def _modules() -> list[Path]:
    return sorted(ROOT.glob("*.py")) + sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))


def test_every_subpackage_is_covered() -> None:
    packages = {p.parent.relative_to(ROOT).parts[0] for p in ROOT.rglob("__init__.py") if p.parent != ROOT}
    assert packages == set(LAYERS)


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    total = fn.end_lineno - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        total -= first.end_lineno - first.lineno + 1
    return total


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_and_function_sizes(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert source.count("\n") <= MAX_MODULE_LINES, f"{path.name}: {source.count(chr(10))} lines"
    sizes = {fn.name: _code_lines(fn) for fn in _functions(ast.parse(source))}
    long = {name: n for name, n in sizes.items() if n > MAX_FUNCTION_CODE_LINES}
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_CODE_LINES} lines of code: {long}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_function_local_imports_say_why(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    bare = []
    for fn in _functions(ast.parse(source)):
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                line, above = lines[node.lineno - 1], lines[node.lineno - 2]
                if "#" not in line and not above.strip().startswith("#"):
                    bare.append(f"{fn.name}:{node.lineno}")
    assert not bare, f"{path.name}: function-local imports without a comment saying why: {bare}"


def test_training_graph_build_is_in_named_steps() -> None:
    tree = ast.parse((ROOT / "train" / "graph.py").read_text(encoding="utf-8"))
    sizes = {fn.name: _code_lines(fn) for fn in _functions(tree)}
    assert sizes["build_training_graph"] <= MAX_STEP_LINES, sizes
    assert all(n <= MAX_STEP_LINES for n in sizes.values()), sizes
