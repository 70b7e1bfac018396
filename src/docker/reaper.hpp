// reaper: what removes kernex's containers and temporary dirs when kernex
// is killed (kill -9, a crash) and cannot remove them itself. A small child
// process, forked at start and in a session of its own, waits on a socket
// whose other end only kernex holds: kernex tells it what it made (and what
// it removed itself); when that socket ends without a goodbye, kernex is
// dead, and the reaper removes the containers it was told of (DELETE
// ?force through the Engine API, the same daemon address), the mount points
// of the work dir's nosuid bind (nosuid_bind.hpp), and then the dirs
// (remove_tree, as the local executor's reaper does), and exits. After fork
// it only makes system calls on memory prepared before the fork
// (async-signal-safe).
//
// A daemon reached over TLS needs OpenSSL, which a forked child of a
// threaded process must not use (a lock another thread held at the fork
// stays held forever in the child). There the child execs kernex-reaper
// (src/docker/reaper_main.cpp; found by helper_program.hpp) at once, a
// fresh process that reads the same orders and removes the containers
// through docker_client. Each reaper also writes an entry in the ledger
// (ledger.hpp), which the next kernex start of any command reads should
// kernex and the reaper both be killed. Internal.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>

#include "kernex/docker_client.hpp"

namespace kernex::docker {

class reaper {
public:
    // Starts the reaper for the daemon client speaks to (unix://, tcp://,
    // tcp:// over TLS). Throws kernex::error: io_error when it cannot be
    // made, invalid_argument for an address it cannot reach (the tcp name is
    // resolved now). Over TLS without kernex-reaper installed, no reaper is
    // started and missing() says so (the next start's sweep is then what
    // removes a killed kernex's containers).
    explicit reaper(const docker_client& client);
    // Says goodbye (nothing is removed), closes the socket, reaps the child.
    ~reaper();
    reaper(const reaper&) = delete;
    reaper& operator=(const reaper&) = delete;

    // What to remove should kernex die: a container id, a dir. forget_*
    // when kernex removed it itself (or leaves it on purpose). noexcept: a
    // reaper that is gone leaves the sweep at the next start to do its work.
    void track_container(const std::string& id) noexcept;
    void forget_container(const std::string& id) noexcept;
    void track_dir(const std::string& path) noexcept;
    void forget_dir(const std::string& path) noexcept;
    // A mount point of nosuid_bind's: unmounted and rmdir-ed (never
    // emptied), after the containers and before the dirs.
    void track_mount(const std::string& path) noexcept;
    void forget_mount(const std::string& path) noexcept;

    pid_t pid() const noexcept { return m_pid; }

    // Why there is no reaper (empty when there is one), for the user.
    const std::string& missing() const noexcept { return m_missing; }

private:
    void send(char what, const std::string& value) noexcept;

    std::filesystem::path m_ledger_entry;  // see ledger.hpp
    int m_socket = -1;
    pid_t m_pid = -1;
    std::string m_missing;
};

// kernex-reaper's work, in that fresh process: reads the orders from fd
// until it ends, and when no goodbye came, removes the containers through
// a docker_client made with options, then the dirs. Returns the exit status.
int run_reaper_helper(int fd, const docker_client_options& options);

}  // namespace kernex::docker
