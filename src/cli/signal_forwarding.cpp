// The self-pipe behind signal_forwarding. Byte 0 on the pipe means "stop";
// any other byte is the number of the signal that arrived.
#include "cli/signal_forwarding.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

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

signal_forwarding::signal_forwarding(std::function<void(int)> on_signal) : m_on_signal(std::move(on_signal)) {
    if (::pipe2(m_pipe, O_CLOEXEC) != 0) throw error(errc::io_error, "cannot make a pipe for signal handling");
    // The handler must never block: a full pipe drops the signal (one
    // already waiting is enough to interrupt).
    ::fcntl(m_pipe[1], F_SETFL, O_NONBLOCK);
    g_write_fd.store(m_pipe[1]);
    m_thread = std::jthread([this] {
        for (;;) {
            char byte = 0;
            const auto n = ::read(m_pipe[0], &byte, 1);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0 || byte == 0) return;
            m_received.store(byte);
            try {
                m_on_signal(byte);
            } catch (...) {
                // Nothing left to interrupt (the code just ended, the kernel is gone).
            }
        }
    });
    struct sigaction forward {};
    forward.sa_handler = write_signal_byte;
    sigemptyset(&forward.sa_mask);
    forward.sa_flags = SA_RESTART;
    for (std::size_t i = 0; i < std::size(m_signals); ++i) ::sigaction(m_signals[i], &forward, &m_old[i]);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &m_old_pipe);
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
