// signal_forwarding: while alive, SIGINT, SIGTERM and SIGHUP run a callback
// on a thread of its own instead of killing the program (and orphaning the
// code it runs); SIGPIPE is ignored, so a closed stdout is a write error the
// caller sees. The signal handler only writes a byte to a pipe, which is
// async-signal-safe: the callback (an HTTP request for a remote kernel, a
// mutex for a local one) never runs inside the handler.
#pragma once

#include <signal.h>

#include <atomic>
#include <functional>
#include <thread>

namespace kernex::cli {

class signal_forwarding {
public:
    // on_signal gets the signal number; exceptions it throws are swallowed.
    // Throws kernex::error(io_error) when the pipe cannot be made.
    explicit signal_forwarding(std::function<void(int)> on_signal);
    ~signal_forwarding();
    signal_forwarding(const signal_forwarding&) = delete;
    signal_forwarding& operator=(const signal_forwarding&) = delete;

    // The last signal received, 0 when none.
    int received() const noexcept { return m_received.load(); }

private:
    static constexpr int m_signals[] = {SIGINT, SIGTERM, SIGHUP};
    std::function<void(int)> m_on_signal;
    std::atomic<int> m_received{0};
    int m_pipe[2] = {-1, -1};
    struct sigaction m_old[std::size(m_signals)] {};
    struct sigaction m_old_pipe {};
    std::jthread m_thread;
};

}  // namespace kernex::cli
