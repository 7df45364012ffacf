#!/usr/bin/env bash
# Build instab's C++ core with AddressSanitizer + UndefinedBehaviorSanitizer in a
# throwaway venv and run the kernel tests under it.
# Usage: tools/sanitize.sh [pytest args...]   (default: the kernel test files)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-/tmp/instab-asan-venv}
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"

python3 -m venv "$venv"
"$venv/bin/pip" install -q scikit-build-core pybind11
"$venv/bin/pip" install -q --no-build-isolation \
    -C build-dir=build/asan -C cmake.build-type=RelWithDebInfo \
    -C "cmake.define.CMAKE_CXX_FLAGS=$flags" -C "cmake.define.CMAKE_SHARED_LINKER_FLAGS=$flags" ".[test]"

tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/test_instability.py tests/test_preprocess.py tests/test_distort.py tests/test_isp.py)
# Python itself is not instrumented: preload the runtime, and leave leak checking to
# tools that understand the interpreter's arenas.
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
