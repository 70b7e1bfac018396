#!/bin/sh
# Runs one test of the mcp suite with node, after making sure the official
# MCP TypeScript SDK client is installed in the build dir (once: later tests
# find it there; a flock keeps parallel tests from installing it twice).
#   run_test.sh TEST.mjs
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${KERNEX_BUILD_DIR:?KERNEX_BUILD_DIR is set by meson test}
sdk_version=1.32.2
dir=$build/tests/mcp/sdk
mkdir -p "$dir"
(
    flock 9
    if [ ! -f "$dir/node_modules/@modelcontextprotocol/sdk/package.json" ] ||
       ! grep -q "\"version\": \"$sdk_version\"" "$dir/node_modules/@modelcontextprotocol/sdk/package.json"; then
        command -v npm >/dev/null || { echo "the mcp suite needs node and npm (scripts/setup.sh installs them)" >&2; exit 1; }
        echo '{"name":"kernex-mcp-tests","private":true,"type":"module"}' > "$dir/package.json"
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "@modelcontextprotocol/sdk@$sdk_version") >&2
    fi
) 9>"$dir/.lock"
export NODE_PATH="$dir/node_modules"
export KERNEX_MCP_SDK="$dir/node_modules/@modelcontextprotocol/sdk"
exec node --test --test-concurrency=1 --test-reporter=spec "$here/$1"
