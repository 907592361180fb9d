#!/usr/bin/env bash
# The test command: sets up (idempotently), then runs the format and lint checks, the C++
# unit tests and the Python tests, then the C++ tests again under ASan+UBSan and every fuzz
# target for FUZZ_SECONDS (default 30) each. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
build=build/python
cpp_files=$(find cpp -name '*.cpp' -o -name '*.h' | sort)

echo "== clang-format"
clang-format --dry-run --Werror $cpp_files
echo "== ruff"
ruff format --check .
ruff check .
echo "== clang-tidy"
find cpp/src cpp/bindings -name '*.cpp' | sort |
  xargs -P "$(nproc)" -n 4 clang-tidy -p "$build" --quiet 2>/dev/null
echo "== C++ tests"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
echo "== CMake package (find_package(torch2mlx) from a downstream project)"
cmake --install "$build" --component cpp --prefix build/install >/dev/null
cmake -S cpp/tests/consumer -B build/consumer -G Ninja -DCMAKE_PREFIX_PATH="$PWD/build/install" >/dev/null
cmake --build build/consumer >/dev/null
build/consumer/consumer build/consumer/check.safetensors
echo "== Python tests"
python -m pytest -q "$@"

# A second, clang build of the core with AddressSanitizer and UBSan; incremental once built.
sanitizer_start=$SECONDS
asan=build/asan
export UBSAN_OPTIONS=print_stacktrace=1
echo "== C++ tests under ASan+UBSan ($asan)"
CC=clang CXX=clang++ cmake -S . -B "$asan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTORCH2MLX_SANITIZE=ON -DTORCH2MLX_BUILD_TESTS=ON -DTORCH2MLX_BUILD_FUZZERS=ON >/dev/null
cmake --build "$asan" | { grep -v '^\[[0-9]*/[0-9]*\] ' || true; }
ctest --test-dir "$asan" --output-on-failure -j "$(nproc)"
echo "== Fuzz targets under ASan+UBSan, ${FUZZ_SECONDS:-30} s each"
python cpp/fuzz/make_seeds.py build/fuzz-seeds
cpp/fuzz/run.sh "$asan" build/fuzz-seeds
echo "sanitizer stages: $((SECONDS - sanitizer_start)) s"
