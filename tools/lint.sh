#!/usr/bin/env bash
# Static checks: ruff (style, imports, bugbear, complexity, private imports), mypy
# (strict on the public API) and stubtest (instab/_core.pyi against the compiled core).
# Configuration is in pyproject.toml ([tool.ruff], [tool.mypy]).
# Usage: tools/lint.sh            (from any directory; uses the active Python)
# Runs all three and exits non-zero if any of them found something.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}

status=0
run() {
    echo "== $*"
    "$@" || status=1
}

run "$python" -m ruff check python tests benchmarks tools
run "$python" -m mypy
# stubtest imports the compiled core: build it first (pip install -e .).
allowlist=()
[ -f tools/stubtest-allowlist.txt ] && allowlist=(--allowlist tools/stubtest-allowlist.txt)
run "$python" -m mypy.stubtest instab._core "${allowlist[@]}"

if [ "$status" -ne 0 ]; then
    echo "lint: findings above" >&2
fi
exit "$status"
