// reaper: what removes kernex's containers and temporary dirs when kernex
// is killed (kill -9, a crash) and cannot remove them itself. A small child
// process, forked at start and in a session of its own, waits on a socket
// whose other end only kernex holds: kernex tells it what it made (and what
// it removed itself); when that socket ends without a goodbye, kernex is
// dead, and the reaper removes the containers it was told of (DELETE
// ?force through the Engine API, the same daemon address) and then the dirs
// (rm -rf), and exits. After fork it only makes system calls on memory
// prepared before the fork (async-signal-safe), then execs rm. Internal.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

namespace kernex::docker {

class reaper {
public:
    // Forks the reaper for the daemon at docker_host (unix:// or tcp://).
    // Throws kernex::error: io_error when it cannot be made, invalid_argument
    // for an address it cannot reach (the tcp name is resolved now).
    explicit reaper(const std::string& docker_host);
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

    pid_t pid() const noexcept { return m_pid; }

private:
    void send(char what, const std::string& value) noexcept;

    int m_socket = -1;
    pid_t m_pid = -1;
};

}  // namespace kernex::docker
