#!/usr/bin/env bash
# The whole test suite: C++ unit and integration tests (GoogleTest via
# CTest), then the end-to-end tests that drive the real server over HTTP.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
ctest --test-dir "$build" --output-on-failure -j2 --timeout 600
if [ -d tests/e2e ] && ls tests/e2e/test_*.py >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
  TIDAL_BIN="$build/bin/tidal" python3 -m pytest -q tests/e2e
fi
