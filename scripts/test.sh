#!/usr/bin/env bash
# The test command: sets up (idempotently), then runs the format and lint checks, the C++
# unit tests and the Python tests. Exits non-zero if anything fails.
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
echo "== Python tests"
python -m pytest -q "$@"
