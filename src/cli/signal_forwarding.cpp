// The self-pipe behind signal_forwarding. Byte 0 on the pipe means "stop";
// any other byte is the number of the signal that arrived.
#include "cli/signal_forwarding.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "kernex/error.hpp"

namespace kernex::cli {

namespace {

// One forwarding at a time per process (the CLI runs one command).
std::atomic<int> g_write_fd{-1};

extern "C" void write_signal_byte(int sig) {
    const int saved = errno;
    const int fd = g_write_fd.load();
    const char byte = static_cast<char>(sig);
    if (fd >= 0) [[maybe_unused]] auto n = ::write(fd, &byte, 1);
    errno = saved;
}

}  // namespace

signal_forwarding::signal_forwarding(std::function<void(int)> on_signal, escalation esc)
    : m_on_signal(std::move(on_signal)), m_escalation(std::move(esc)) {
    if (::pipe2(m_pipe, O_CLOEXEC) != 0) throw error(errc::io_error, "cannot make a pipe for signal handling");
    // The handler must never block: a full pipe drops the signal (one
    // already waiting is enough to interrupt).
    ::fcntl(m_pipe[1], F_SETFL, O_NONBLOCK);
    g_write_fd.store(m_pipe[1]);
    m_thread = std::jthread([this] { run(); });
    struct sigaction forward {};
    forward.sa_handler = write_signal_byte;
    sigemptyset(&forward.sa_mask);
    forward.sa_flags = SA_RESTART;
    for (std::size_t i = 0; i < std::size(m_signals); ++i) ::sigaction(m_signals[i], &forward, &m_old[i]);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &m_old_pipe);
}

void signal_forwarding::call(const std::function<void()>& f) noexcept {
    try {
        f();
    } catch (...) {
        // Nothing left to interrupt (the code just ended, the kernel is gone).
    }
}

void signal_forwarding::run() {
    using clock = std::chrono::steady_clock;
    auto give_up_at = clock::time_point::max();  // armed by a first SIGINT
    int interrupts = 0;
    auto give_up = [&] {
        give_up_at = clock::time_point::max();
        if (!m_escalation.give_up || m_gave_up.exchange(true)) return;
        call(m_escalation.give_up);
    };
    for (;;) {
        int timeout = -1;  // the stop byte is the way out
        if (give_up_at != clock::time_point::max())
            timeout = static_cast<int>(std::max<long>(
                0, std::chrono::ceil<std::chrono::milliseconds>(give_up_at - clock::now()).count()));
        pollfd p{m_pipe[0], POLLIN, 0};
        const int n = ::poll(&p, 1, timeout);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            give_up();  // the grace period ran out
            continue;
        }
        char byte = 0;
        const auto got = ::read(m_pipe[0], &byte, 1);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0 || byte == 0) return;
        const int sig = byte;
        m_received.store(sig);
        if (sig == SIGINT && ++interrupts == 1) {
            call([&] { m_on_signal(sig); });
            if (m_escalation.give_up) give_up_at = clock::now() + m_escalation.grace;
        } else if (m_escalation.give_up) {
            if (sig != SIGINT) call([&] { m_on_signal(sig); });
            give_up();
        } else {
            call([&] { m_on_signal(sig); });
        }
    }
}

signal_forwarding::~signal_forwarding() {
    for (std::size_t i = 0; i < std::size(m_signals); ++i) ::sigaction(m_signals[i], &m_old[i], nullptr);
    ::sigaction(SIGPIPE, &m_old_pipe, nullptr);
    g_write_fd.store(-1);
    // A blocking write: the stop byte must arrive even behind queued signals.
    ::fcntl(m_pipe[1], F_SETFL, 0);
    const char stop = 0;
    [[maybe_unused]] auto n = ::write(m_pipe[1], &stop, 1);
    if (m_thread.joinable()) m_thread.join();
    ::close(m_pipe[0]);
    ::close(m_pipe[1]);
}

}  // namespace kernex::cli
