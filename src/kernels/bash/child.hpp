// Low-level child processes for the bash kernel: fork/exec with an exact fd
// layout (the shell's command and control channels live at fixed numbers),
// its own process group, and optionally death with the kernel. The kernex
// process module spawns ordinary children; the shell needs extra fds and
// PR_SET_PDEATHSIG, which it does not offer.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../../confine/unique_fd.hpp"

namespace kernex::bash {

using kernex::unique_fd;

// Both ends of a pipe, close-on-exec (children get them only through child_spec::fds).
struct pipe_pair {
    unique_fd read;
    unique_fd write;
};
// `flags` are added to pipe2's O_CLOEXEC (O_DIRECT: packet mode). Throws std::system_error.
pipe_pair make_pipe(int flags = 0);

struct child_spec {
    std::vector<std::string> argv;               // argv[0]: absolute path
    std::vector<std::pair<int, int>> fds;        // {target, source}: every other fd is closed
    std::vector<std::string> env;                // full environment, "NAME=value"
    bool die_with_parent = false;                // SIGKILL when the spawning thread dies
};

// Forks and execs `spec` as leader of a new process group (in the kernel's
// session). Returns its pid. Throws std::system_error when fork or exec fails.
pid_t spawn_child(const child_spec& spec);

// Forks a process that joins process group `pgid`, ignores SIGINT, and blocks
// reading `lifeline` (the read end of a pipe whose write end only the kernel
// holds). When the kernel dies, even by SIGKILL, the read returns and the
// watchdog kills the whole group. Returns its pid. Throws std::system_error.
pid_t spawn_watchdog(pid_t pgid, int lifeline);

// The absolute path of `name` on PATH, or nullopt.
std::optional<std::string> find_on_path(const std::string& name);

// The current environment with `overrides` ("NAME=value") replacing same-named entries.
std::vector<std::string> environment_with(const std::vector<std::string>& overrides);

struct capture_result {
    int wait_status = 0;
    bool timed_out = false;
    std::string out;
    std::string err;
};

// Runs `spec` (fds 0..2 are provided here) to completion with `input` on its
// stdin, collecting stdout and stderr until `timeout`; on timeout the group
// is killed. The child is always reaped. Throws std::system_error.
capture_result run_capture(child_spec spec, const std::string& input,
                           std::chrono::milliseconds timeout);

// Signals the group, waits up to `grace` for it to empty (reaping `reap`,
// the group's members that are the kernel's own children), then SIGKILLs it
// and waits again. Returns the wait status of reap[0] if it was reaped here.
std::optional<int> stop_group(pid_t pgid, const std::vector<pid_t>& reap, int sig,
                              std::chrono::milliseconds grace) noexcept;

}  // namespace kernex::bash
