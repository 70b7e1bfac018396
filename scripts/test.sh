#!/usr/bin/env bash
# README command (2): set up, build (warnings are errors), run every test
# suite (among them embed: `meson install` into a staging dir, then
# examples/embed built with meson and CMake against that tree only, and
# run; and python: the Python package under Debian's pytest), then the unit and integration suites again under AddressSanitizer +
# UndefinedBehaviorSanitizer, the threaded parts under ThreadSanitizer, and
# each fuzz target for a bounded time. Any sanitizer report fails the run.
# Usage: scripts/test.sh            (from a fresh Debian 12 machine, as root)
# Environment:
#   KERNEX_BUILD_DIR      the main build dir (default: build); the sanitizer
#                         builds go beside it, as BUILD-asan and BUILD-tsan
#   KERNEX_FUZZ_SECONDS   per fuzz target (default: 20)
#   KERNEX_SANITIZERS=off skip the sanitizer builds (for a quick local run;
#                         CI runs them)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PYDEVD_DISABLE_FILE_VALIDATION=1

build=${KERNEX_BUILD_DIR:-build}
if [[ ! -f $build/build.ninja ]]; then
  meson setup "$build" --werror -Dbash_kernel=enabled
fi
meson compile -C "$build"
meson test -C "$build" --print-errorlogs --num-processes 2

# Sanitizer reports of every instrumented process (the tests, kernex, the
# test kernel and kernex-bash they launch) go to files in one dir, so that a
# report from a child whose death a test expects still fails the run.
sanitizer_logs=$(mktemp -d "${TMPDIR:-/tmp}/kernex-sanitizers.XXXXXX")
trap 'rm -rf "$sanitizer_logs"' EXIT
check_sanitizer_logs() {  # $1: what ran
  if compgen -G "$sanitizer_logs/*" > /dev/null; then
    echo "test.sh: sanitizer reports from $1:" >&2
    cat "$sanitizer_logs"/* >&2
    exit 1
  fi
}

if [[ ${KERNEX_SANITIZERS:-on} != off ]]; then
  # Unoptimised with line tables only: the quickest instrumented build that
  # still gives file:line stacks. GCC's maybe-uninitialized warning is wrong
  # under the sanitizers' instrumentation (std::function inside std::regex),
  # so it is the one warning the main build alone enforces (with, for TSan,
  # -Wtsan: Boost.Asio's atomic_thread_fence, which TSan does not model).
  sanitized_setup() {  # $1: dir, $2: sanitizers, $3: extra compiler flags
    if [[ ! -f $1/build.ninja ]]; then
      # -Dpython=disabled: the python suite runs on the main build only.
      meson setup "$1" --werror -Dbash_kernel=enabled -Dpython=disabled -Db_sanitize="$2" -Db_lundef=false \
        -Doptimization=0 -Ddebug=false \
        "-Dcpp_args=-g1 -fno-sanitize-recover=all -Wno-maybe-uninitialized ${3:-}" \
        -Dcpp_link_args=-fno-sanitize-recover=all
    fi
  }

  asan=$build-asan
  sanitized_setup "$asan" address,undefined
  meson compile -C "$asan"
  ASAN_OPTIONS="log_path=$sanitizer_logs/asan:detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1" \
  UBSAN_OPTIONS="log_path=$sanitizer_logs/ubsan:halt_on_error=1:print_stacktrace=1" \
  LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp" \
    meson test -C "$asan" --no-rebuild --print-errorlogs --num-processes 2 --suite unit --suite integration \
    --timeout-multiplier 3
  check_sanitizer_logs "the unit and integration suites (ASan+UBSan)"

  # ThreadSanitizer on the threaded parts: multi_kernel_manager, the
  # restarter and the heartbeat (the kernel_manager tests), and the stress
  # suite's fleet of kernels driven from a thread each, with kill -9 faults.
  tsan=$build-tsan
  sanitized_setup "$tsan" thread -Wno-tsan
  ninja -C "$tsan" tests/integration/integration_kernel_manager tests/stress/stress_many_kernels \
    tests/helpers/kernex-test-kernel src/kernels/bash/kernex-bash
  TSAN_OPTIONS="log_path=$sanitizer_logs/tsan:halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/sanitizers/tsan.supp" \
    meson test -C "$tsan" --no-rebuild --print-errorlogs --timeout-multiplier 3 kernel_manager many_kernels
  check_sanitizer_logs "the kernel_manager tests and the many_kernels stress test (TSan)"
fi

# The fuzz targets, for a bounded time each, from their checked-in corpora.
for target in $(ls tests/fuzz/corpus); do
  bash tests/fuzz/run.sh "$target" "${KERNEX_FUZZ_SECONDS:-20}"
done
echo "test.sh: all suites passed"
