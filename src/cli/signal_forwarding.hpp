// signal_forwarding: while alive, SIGINT, SIGTERM and SIGHUP run a callback
// instead of killing the program (and orphaning the code it runs); SIGPIPE
// is ignored, so a closed stdout is a write error the caller sees.
//
// Two ways to run the callback:
// - On a thread of its own (the first constructor): the signal handler only
//   writes a byte to a pipe, which is async-signal-safe, and the thread runs
//   the callback, which may then block, lock or talk to a peer (an HTTP
//   request for a remote kernel, a mutex for a local one).
// - In the signal handler itself (in_handler): no thread and no pipe, for
//   a callback that is async-signal-safe, such as code_executor::interrupt()
//   of the local and docker executors (a write to their cancel pipe). A
//   short-lived command then stays single-threaded: no thread's stack,
//   malloc arena or exit to pay for at each start (docs/benchmarks.md, CLI
//   process start).
//
// With an escalation (thread form only), patience has a limit: the first
// SIGINT runs the callback (interrupt the code) and starts the grace period;
// a second SIGINT, SIGTERM or SIGHUP at any time, or the grace period
// running out, runs give_up (stop waiting for the code) once.
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

struct in_handler_t {
    explicit in_handler_t() = default;
};
inline constexpr in_handler_t in_handler{};

class signal_forwarding {
public:
    // on_signal gets the signal number, on the forwarding's thread;
    // exceptions it (and give_up) throws are swallowed. Install it before
    // anything is spawned: a signal that arrives earlier kills the program
    // with the default action. Throws kernex::error(io_error) when the pipe
    // cannot be made.
    explicit signal_forwarding(std::function<void(int)> on_signal, escalation esc = {});
    // on_signal runs inside the signal handler, on whichever thread the
    // signal interrupted, for every signal: it must be async-signal-safe and
    // must not throw (no allocation, no lock: a write to a pipe, an atomic).
    // Starts no thread. Never throws.
    signal_forwarding(in_handler_t, std::function<void(int)> on_signal) noexcept;
    ~signal_forwarding();
    signal_forwarding(const signal_forwarding&) = delete;
    signal_forwarding& operator=(const signal_forwarding&) = delete;

    // The last signal received, 0 when none.
    int received() const noexcept { return m_received.load(); }
    // True once give_up ran.
    bool gave_up() const noexcept { return m_gave_up.load(); }
    // Returns once no callback is running (in a handler on another thread,
    // or on the forwarding's thread), so that whatever the callback reaches,
    // made unreachable before this call (an atomic pointer set to null), may
    // be destroyed. Not to be called from the callback.
    void settle() const noexcept;

private:
    static void handle(int sig) noexcept;  // the signal handler
    void install() noexcept;
    void run();
    void call(const std::function<void()>& f) noexcept;

    static constexpr int m_signals[] = {SIGINT, SIGTERM, SIGHUP};
    std::function<void(int)> m_on_signal;
    escalation m_escalation;
    bool m_in_handler = false;
    std::atomic<int> m_received{0};
    std::atomic<bool> m_gave_up{false};
    int m_pipe[2] = {-1, -1};
    struct sigaction m_old[std::size(m_signals)] {};
    struct sigaction m_old_pipe {};
    std::jthread m_thread;
};

}  // namespace kernex::cli
