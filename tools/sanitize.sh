#!/usr/bin/env bash
# Build instab's C++ core with AddressSanitizer + UndefinedBehaviorSanitizer (plus
# float-cast-overflow, which GCC's "undefined" group leaves out: NaN or huge
# floats cast to integers) in a throwaway venv and run the kernel tests and the
# fuzz suite under it.
# Usage: tools/sanitize.sh [pytest args...]   (default: the kernel, binding and fuzz tests)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-/tmp/instab-asan-venv}
flags="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow"
flags="$flags -fno-omit-frame-pointer -g"

python3 -m venv "$venv"
"$venv/bin/pip" install -q scikit-build-core pybind11
"$venv/bin/pip" install -q --no-build-isolation \
    -C build-dir=build/asan -C cmake.build-type=RelWithDebInfo \
    -C "cmake.define.CMAKE_CXX_FLAGS=$flags" -C "cmake.define.CMAKE_SHARED_LINKER_FLAGS=$flags" ".[test]"

tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/metrics/test_instability.py tests/inference/test_preprocessing.py
    tests/environments/test_distort.py tests/isp/test_isp.py tests/isp/test_demosaic.py
    tests/metrics/test_instability_wide.py tests/environments/test_sharpen.py tests/test_core_bindings.py tests/fuzz)
# Python itself is not instrumented: preload the runtime, and leave leak checking to
# tools that understand the interpreter's arenas.
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
