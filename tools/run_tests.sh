#!/usr/bin/env bash
# The whole test suite: C++ unit and integration tests (GoogleTest via
# CTest), then the end-to-end tests that drive the real server over HTTP
# with real clients (the openai SDK, raw HTTP, tidal-bench).
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
ctest --test-dir "$build" --output-on-failure -j2 --timeout 600
# A Debian system Python refuses plain `pip install` (externally managed);
# the e2e tests' few pure-Python packages then go in with the override.
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}
pip_install -r tests/e2e/requirements.txt
TIDAL_BIN="$build/bin/tidal" python3 -m pytest -q tests/e2e
