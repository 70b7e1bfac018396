// For the docker and gateway suites: runs tests/mcp/session_backend.mjs (the
// official MCP SDK client driving `kernex mcp` whose sessions' kernels run
// elsewhere) through run_test.sh, with the environment the caller gives
// (KERNEX_MCP_SESSION_ARGS, KERNEX_MCP_PROBE, ...; see the script).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>

#include "kernex/process.hpp"

namespace kernex::test {

// node's report (stdout and stderr) and exit code; 10 minutes at most (the
// first run may install the SDK from npm).
inline run_result run_mcp_session_backend(const std::map<std::string, std::string>& env) {
    const char* source = std::getenv("KERNEX_SOURCE_DIR");
    if (!source || !std::getenv("KERNEX_BUILD_DIR"))
        throw std::runtime_error("KERNEX_SOURCE_DIR and KERNEX_BUILD_DIR are set by meson test");
    spawn_options spawn;
    spawn.argv = {"/bin/sh", (std::filesystem::path(source) / "tests" / "mcp" / "run_test.sh").string(),
                  "session_backend.mjs"};
    for (const auto& [key, value] : env) spawn.env[key] = value;
    spawn.merge_stderr = true;
    run_options limits;
    limits.timeout = std::chrono::minutes(10);
    return run_process(spawn, limits);
}

}  // namespace kernex::test
