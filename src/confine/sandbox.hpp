// The bubblewrap command line of the sandbox (see include/kernex/sandbox.hpp):
// which host paths are visible and how, the namespaces, the environment and
// the rlimits. Internal to the library.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "kernex/sandbox.hpp"

namespace kernex::detail {

struct sandbox_request {
    std::filesystem::path work_dir;                   // bound read-write, the cwd inside
    std::vector<std::filesystem::path> read_write;    // more dirs bound read-write at the same path
    std::vector<std::filesystem::path> read_only;     // more dirs bound read-only at the same path
};

// Where the runner is inside the sandbox.
inline constexpr const char* sandbox_runner_path = "/kernex-runner";

// The bwrap program, once checked to work here (the check runs once per
// process). Throws kernex::error(launch_failed) saying how to install
// bubblewrap or enable user namespaces.
const std::filesystem::path& sandbox_program();

// bwrap's arguments, then "--", then command (whose argv[0] must be an
// absolute path inside the sandbox's view).
std::vector<std::string> sandbox_argv(const sandbox_request& request, const std::vector<std::string>& command);

// The sandbox of a resident runner (src/runner): runner (a host path bwrap
// can open) is bound read-only at sandbox_runner_path and runs as the
// sandbox's pid 1 (it reaps and kills in there), with no capability even
// for root (so no block can reach its fds through /proc).
std::vector<std::string> sandbox_runner_argv(const sandbox_request& request, const std::string& runner);

// PATH inside the sandbox: the system's directories.
const std::string& sandbox_path();

// The environment inside: env as given, with PATH set to sandbox_path()
// (prefixed by path_prefix) and HOME to the private /tmp.
std::map<std::string, std::string> sandbox_environment(std::map<std::string, std::string> env,
                                                       const std::vector<std::filesystem::path>& path_prefix);

// The rlimits the options ask for, as spawn_options::rlimits.
std::vector<std::pair<int, std::uint64_t>> sandbox_rlimits(const sandbox_options& options);

// Whether a file of /etc stays out of the sandbox (relative to /etc).
bool sandbox_hides(const std::filesystem::path& etc_relative);

}  // namespace kernex::detail
