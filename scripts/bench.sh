#!/usr/bin/env bash
# Builds kernex and runs the side-by-side benchmarks of tests/bench, printing
# their tables (docs/benchmarks.md says what each measures; paste the output
# there with the machine and its load). Benchmarks are not tests: nothing
# here fails on a figure, only on a benchmark that cannot run.
#
# Usage: scripts/bench.sh [all]
#   default: kernels vs jupyter_client (start, per cell, streaming, the bare
#            floors), local executor vs a bare spawn, the CLI's process
#            start, MCP overhead, notebooks vs nbclient
#   all:     also the gateway (a Jupyter Server of its own), JupyterHub (a
#            hub of its own) and, as root, the docker executor and docker
#            kernels (a dockerd of their own)
# Environment:
#   KERNEX_BUILD_DIR  build dir (default: build; configured if missing, with
#                     the default debugoptimized build type the figures use)
#   KERNEX_BENCH_CELLS / KERNEX_BENCH_STARTS / KERNEX_BENCH_STREAMS
#                     run_kernel_bench.py's sizes (default 200, 3, 15)
set -euo pipefail
cd "$(dirname "$0")/.."

build=${KERNEX_BUILD_DIR:-build}
if [[ ! -f $build/build.ninja ]]; then
  meson setup "$build" -Dbash_kernel=enabled
fi
ninja -C "$build" -j2
export PYDEVD_DISABLE_FILE_VALIDATION=1
export JUPYTER_PATH="$PWD/$build/tests/helpers/share/jupyter:$PWD/$build/kernelspecs/kernex-bash/jupyter"

section() {
  echo
  echo "## $1"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
}

section "Kernels: kernex vs jupyter_client"
/usr/bin/python3 tests/bench/run_kernel_bench.py "$build" "${KERNEX_BENCH_CELLS:-200}" \
  "${KERNEX_BENCH_STARTS:-3}" "${KERNEX_BENCH_STREAMS:-15}" 2> >(grep -v '^Run with XEUS' >&2)

section "Local executor vs a bare spawn (microseconds per block)"
"$build/tests/bench/bench_local_executor" 200

section "CLI process start: kernex --version and kernex exec vs /bin/true and a bare spawn (ms)"
# KERNEX_LIBEXEC_DIR: kernex-keeper, as an installed kernex finds it.
KERNEX_LIBEXEC_DIR="$build" "$build/tests/bench/bench_cli_start" "$build/src/cli/kernex" 200

section "MCP per-call overhead (microseconds)"
(cd "$build" && tests/bench/bench_mcp 100 src/cli/kernex)

section "Notebooks: kernex vs nbclient"
/usr/bin/python3 tests/bench/run_notebook_bench.py "$build" 1

if [[ ${1:-} == all ]]; then
  section "Gateway: websocket through Jupyter Server vs ZeroMQ (ms per cell)"
  "$build/tests/bench/bench_gateway" python3 50 10
  "$build/tests/bench/bench_gateway" kernex-test 50 10
  section "JupyterHub: cells through the hub's proxy vs straight to the user's server (ms per cell)"
  /usr/bin/python3 tests/bench/bench_hub.py "$build/src/cli/kernex" 50 2
  if [[ $(id -u) == 0 ]]; then
    section "Docker executor vs a bare Engine API exec (microseconds per block)"
    "$build/tests/bench/bench_docker_executor" 100
    section "Kernels in Docker containers vs local (ms)"
    "$build/tests/bench/bench_docker_kernel" 5 100
  else
    echo "(docker benchmarks skipped: they start a dockerd of their own and need root)"
  fi
fi
