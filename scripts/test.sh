#!/usr/bin/env bash
# README command (2): set up, build (warnings are errors), run every test suite.
# Usage: scripts/test.sh            (from a fresh Debian 12 machine, as root)
# Environment: KERNEX_BUILD_DIR (default: build), KERNEX_FUZZ_SECONDS (default: 20 per target).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

build=${KERNEX_BUILD_DIR:-build}
if [[ ! -f $build/build.ninja ]]; then
  meson setup "$build" --werror -Dbash_kernel=enabled
fi
meson compile -C "$build"

export PYDEVD_DISABLE_FILE_VALIDATION=1
meson test -C "$build" --print-errorlogs --num-processes 2

# The fuzz targets, for a bounded time each, from their checked-in corpora.
if [[ -x tests/fuzz/run.sh ]]; then
  for target in $(ls tests/fuzz/corpus 2>/dev/null); do
    bash tests/fuzz/run.sh "$target" "${KERNEX_FUZZ_SECONDS:-20}"
  done
fi
echo "test.sh: all suites passed"
