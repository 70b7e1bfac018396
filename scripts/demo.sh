#!/usr/bin/env bash
# README command (1): set up, build, and run kernex's main job: a stateful,
# multi-step analysis on the python3 kernel (examples/analysis.py). Each
# cell reuses what the earlier ones made; the plot is saved as a PNG.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

build=${KERNEX_BUILD_DIR:-build}
if [[ ! -f $build/build.ninja ]]; then
  meson setup "$build" -Dbash_kernel=enabled
fi
meson compile -C "$build"

export PYDEVD_DISABLE_FILE_VALIDATION=1
out=${KERNEX_DEMO_OUT:-demo-output}
mkdir -p "$out"
"$build/src/cli/kernex" run --timeout 120 --output-dir "$out" examples/analysis.py
echo "demo: the plot is in $(ls "$out"/*.png)"
