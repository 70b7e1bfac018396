// signal_forwarding: while alive, SIGINT, SIGTERM and SIGHUP run a callback
// on a thread of its own instead of killing the program (and orphaning the
// code it runs); SIGPIPE is ignored, so a closed stdout is a write error the
// caller sees. The signal handler only writes a byte to a pipe, which is
// async-signal-safe: the callback (an HTTP request for a remote kernel, a
// mutex for a local one) never runs inside the handler.
//
// With an escalation, patience has a limit: the first SIGINT runs the
// callback (interrupt the code) and starts the grace period; a second
// SIGINT, SIGTERM or SIGHUP at any time, or the grace period running out,
// runs give_up (stop waiting for the code) once.
#pragma once

#include <signal.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

namespace kernex::cli {

struct escalation {
    std::chrono::milliseconds grace{3000};
    std::function<void()> give_up{};  // empty: every signal only runs on_signal
};

class signal_forwarding {
public:
    // on_signal gets the signal number; exceptions it (and give_up) throws
    // are swallowed. Install it before anything is spawned: a signal that
    // arrives earlier kills the program with the default action.
    // Throws kernex::error(io_error) when the pipe cannot be made.
    explicit signal_forwarding(std::function<void(int)> on_signal, escalation esc = {});
    ~signal_forwarding();
    signal_forwarding(const signal_forwarding&) = delete;
    signal_forwarding& operator=(const signal_forwarding&) = delete;

    // The last signal received, 0 when none.
    int received() const noexcept { return m_received.load(); }
    // True once give_up ran.
    bool gave_up() const noexcept { return m_gave_up.load(); }

private:
    void run();
    void call(const std::function<void()>& f) noexcept;

    static constexpr int m_signals[] = {SIGINT, SIGTERM, SIGHUP};
    std::function<void(int)> m_on_signal;
    escalation m_escalation;
    std::atomic<int> m_received{0};
    std::atomic<bool> m_gave_up{false};
    int m_pipe[2] = {-1, -1};
    struct sigaction m_old[std::size(m_signals)] {};
    struct sigaction m_old_pipe {};
    std::jthread m_thread;
};

}  // namespace kernex::cli
