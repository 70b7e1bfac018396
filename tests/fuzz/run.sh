#!/bin/sh
# Builds (if needed) and runs a libFuzzer target for a bounded time, starting
# from its checked-in corpus. The corpus is copied to a temporary directory so
# the checkout is never modified; inputs that crash are kept in
# $BUILD/fuzz-artifacts/TARGET/ for reproduction.
#
#   tests/fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#   e.g. tests/fuzz/run.sh frame_decoder 60
#
# KERNEX_FUZZ_BUILD_DIR overrides the build directory (default build-fuzz).
# Exits non-zero when the fuzzer finds a crash or an input that breaks one of
# the target's checks.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2

source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${KERNEX_FUZZ_BUILD_DIR:-$source_dir/build-fuzz}
corpus=$source_dir/tests/fuzz/corpus/$target

if [ ! -f "$source_dir/tests/fuzz/fuzz_$target.cpp" ]; then
    echo "$0: no fuzz target $target (tests/fuzz/fuzz_$target.cpp)" >&2
    exit 2
fi
if [ ! -d "$build_dir" ]; then
    CXX=${CXX:-clang++} meson setup "$build_dir" "$source_dir" -Dfuzzing=true -Dtests=true
fi
ninja -C "$build_dir" "tests/fuzz/fuzz_$target"

work=$(mktemp -d "${TMPDIR:-/tmp}/kernex-fuzz-$target.XXXXXX")
# The target's own temporary files (fuzz_kernelspec writes each input as a
# kernel.json) go in a dir of their own, removed with the corpus copy.
scratch=$(mktemp -d "${TMPDIR:-/tmp}/kernex-fuzz-tmp-$target.XXXXXX")
trap 'rm -rf "$work" "$scratch"' EXIT
trap 'exit 130' INT TERM
if [ -d "$corpus" ]; then
    cp -R "$corpus/." "$work/"
fi
artifacts=$build_dir/fuzz-artifacts/$target
mkdir -p "$artifacts"

TMPDIR=$scratch "$build_dir/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$@" "$work"
