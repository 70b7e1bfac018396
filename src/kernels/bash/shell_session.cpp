#include "shell_session.hpp"

#include "driver_script.hpp"
#include "utf8.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <vector>

namespace kernex::bash {

namespace {

using steady = std::chrono::steady_clock;

constexpr std::size_t max_read_per_turn = 256 * 1024;
constexpr const char* stream_names[2] = {"stdout", "stderr"};

void set_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        throw std::system_error(errno, std::generic_category(), "fcntl");
}

unique_fd make_runner_file() {
    unique_fd fd(::memfd_create("kernex-bash-runner", MFD_CLOEXEC));
    if (!fd) throw std::system_error(errno, std::generic_category(), "memfd_create");
    const std::string_view text = runner_script;
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        throw std::system_error(errno, std::generic_category(), "write runner");
    return fd;
}

// How many bytes at the end of `text` could be the start of `pattern`.
std::size_t partial_suffix(std::string_view text, std::string_view pattern) noexcept {
    for (std::size_t n = std::min(text.size(), pattern.size() - 1); n > 0; --n)
        if (pattern.substr(0, n) == text.substr(text.size() - n)) return n;
    return 0;
}

}  // namespace

std::string describe_wait_status(int wait_status) {
    if (WIFEXITED(wait_status)) return "exit code " + std::to_string(WEXITSTATUS(wait_status));
    if (WIFSIGNALED(wait_status)) {
        const int sig = WTERMSIG(wait_status);
        const char* name = ::strsignal(sig);
        return "killed by signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : "");
    }
    return "status " + std::to_string(wait_status);
}

int shell_exit_code(int wait_status) noexcept {
    if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
    return 255;
}

shell_session::shell_session(std::string bash_path)
    : m_bash_path(std::move(bash_path)),
      m_interrupts(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!m_interrupts) throw std::system_error(errno, std::generic_category(), "eventfd");
}

shell_session::~shell_session() { stop(); }

void shell_session::start() {
    stop();
    pipe_pair command = make_pipe();
    pipe_pair ack = make_pipe();
    pipe_pair control = make_pipe();
    pipe_pair out = make_pipe();
    pipe_pair err = make_pipe();
    pipe_pair lifeline = make_pipe();
    unique_fd runner = make_runner_file();
    // An empty pipe whose write end is closed at once: EOF like /dev/null,
    // but an object of its own, which the driver's `read` recognises.
    pipe_pair input = make_pipe();
    input.write.reset();

    child_spec spec;
    spec.argv = {m_bash_path, "--noprofile", "--norc", "-c", driver_script, "bash"};
    spec.fds = {{0, input.read.get()},     {stdin_fd, input.read.get()},
                {1, out.write.get()},      {2, err.write.get()},
                {command_fd, command.read.get()}, {ack_fd, ack.read.get()},
                {control_fd, control.write.get()}, {runner_fd, runner.get()}};
    spec.env = environment_with({});
    spec.die_with_parent = true;

    const pid_t pid = spawn_child(spec);
    m_pid = pid;
    m_running = true;
    m_shell_died = false;
    m_reaped = false;
    m_ready = false;
    m_version.clear();
    m_control_buffer.clear();
    m_pending[0].clear();
    m_pending[1].clear();
    m_reply.reset();
    m_stale_replies = 0;
    m_command = std::move(command.write);
    m_ack = std::move(ack.write);
    m_control = std::move(control.read);
    m_output[0] = std::move(out.read);
    m_output[1] = std::move(err.read);
    m_lifeline = std::move(lifeline.write);
    m_pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    try {
        m_watchdog = spawn_watchdog(pid, lifeline.read.get());
        for (int fd : {m_command.get(), m_ack.get(), m_control.get(), m_output[0].get(),
                       m_output[1].get()})
            set_nonblocking(fd);
    } catch (...) {
        stop();
        throw;
    }
    // The child's ends are closed here (the pipe_pairs go out of scope), so a
    // dead shell shows up as EOF/EPIPE rather than as silence.

    const auto result = wait_for([this] { return m_ready; }, steady::now() + std::chrono::seconds(10),
                                 nullptr);
    if (result != wait_result::satisfied) {
        std::string said;
        char buf[4096];
        for (auto& fd : m_output) {
            if (!fd) continue;
            const ssize_t n = ::read(fd.get(), buf, sizeof buf);
            if (n > 0) said.append(buf, static_cast<std::size_t>(n));
        }
        const std::string how = m_shell_died ? describe_wait_status(m_exit_wait_status)
                                             : std::string("no answer within 10 s");
        stop();
        throw std::runtime_error("bash (" + m_bash_path + ") did not start: " + how +
                                 (said.empty() ? "" : ": " + said));
    }
}

bool shell_session::send_command(const char* kind, const std::string& payload) {
    // Fields are NUL-terminated; code cannot carry a NUL into bash anyway.
    std::string record = kind;
    record += '\0';
    for (char c : payload)
        if (c != '\0') record += c;
    record += '\0';
    std::size_t sent = 0;
    while (sent < record.size()) {
        const ssize_t n = ::write(m_command.get(), record.data() + sent, record.size() - sent);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN) return false;  // EPIPE: the shell is gone
        // A large cell fills the pipe; the driver reads it as we go.
        pollfd fds[2] = {{m_command.get(), POLLOUT, 0}, {m_pidfd.get(), POLLIN, 0}};
        if (::poll(fds, m_pidfd ? 2 : 1, 1000) < 0 && errno != EINTR) return false;
        if (fds[1].revents & POLLIN) return false;
    }
    return true;
}

shell_session::wait_result shell_session::wait_for(
    const std::function<bool()>& satisfied,
    std::optional<steady::time_point> deadline, const cell_handlers* handlers) {
    while (!satisfied()) {
        if (m_shell_died) return wait_result::shell_died;
        int timeout_ms = -1;
        if (deadline) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - steady::now());
            if (left.count() <= 0) return wait_result::timed_out;
            timeout_ms = static_cast<int>(left.count());
        }
        if (!m_pidfd) timeout_ms = (timeout_ms < 0 || timeout_ms > 100) ? 100 : timeout_ms;

        enum { control, pidfd, interrupts, out, err, count };
        pollfd fds[count] = {{m_control.get(), POLLIN, 0},
                             {m_pidfd.get(), POLLIN, 0},
                             {handlers ? m_interrupts.get() : -1, POLLIN, 0},
                             {handlers ? m_output[0].get() : -1, POLLIN, 0},
                             {handlers ? m_output[1].get() : -1, POLLIN, 0}};
        if (::poll(fds, count, timeout_ms) < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "poll");
        }
        if (fds[interrupts].revents & POLLIN) {
            std::uint64_t n;
            while (::read(m_interrupts.get(), &n, sizeof n) > 0) {
            }
            m_interrupt_requested = true;
            if (m_cell_started && !m_cell_done) {
                ::kill(-m_pid, SIGINT);
                m_interrupt_sent = true;
            }
        }
        for (int i = 0; i < 2; ++i)
            if (fds[out + i].revents & (POLLIN | POLLHUP | POLLERR)) read_output(i, handlers, false);
        if (fds[control].revents & (POLLIN | POLLHUP | POLLERR)) read_control(handlers);

        bool died = (fds[pidfd].revents & POLLIN) != 0;
        if (!m_pidfd) {
            int status = 0;
            if (::waitpid(m_pid, &status, WNOHANG) == m_pid) {
                died = true;
                m_exit_wait_status = status;
                m_reaped = true;
            }
        }
        if (died && !satisfied()) on_shell_death(handlers);
    }
    return wait_result::satisfied;
}

void shell_session::read_control(const cell_handlers* handlers) {
    char buf[4096];
    while (m_control) {
        const ssize_t n = ::read(m_control.get(), buf, sizeof buf);
        if (n > 0) {
            m_control_buffer.append(buf, static_cast<std::size_t>(n));
        } else if (n == 0) {
            m_control.reset();  // every writer is gone: the shell and its children
        } else if (errno != EINTR) {
            break;
        }
        if (n <= 0) break;
    }
    std::size_t end;
    while ((end = m_control_buffer.find('\0')) != std::string::npos) {
        std::string record = m_control_buffer.substr(0, end);
        m_control_buffer.erase(0, end + 1);
        handle_record(record, handlers);
    }
}

void shell_session::handle_record(const std::string& record, const cell_handlers* handlers) {
    const auto space = record.find(' ');
    const std::string kind = record.substr(0, space);
    const std::string arg = space == std::string::npos ? "" : record.substr(space + 1);
    if (kind == "ready") {
        m_version = arg;
        m_ready = true;
    } else if (kind == "start") {
        m_cell_started = true;
        if (m_interrupt_requested && !m_interrupt_sent) {
            ::kill(-m_pid, SIGINT);
            m_interrupt_sent = true;
        }
    } else if (kind == "done") {
        m_cell_status = std::atoi(arg.c_str());
        m_cell_done = true;
    } else if (kind == "reply") {
        if (m_stale_replies > 0)
            --m_stale_replies;
        else
            m_reply = arg;
    } else if (kind == "display") {
        // Output written before the request is already in the pipes: show it first.
        bool shown = false;
        if (handlers) {
            for (int i = 0; i < 2; ++i) read_output(i, handlers, false);
            shown = handlers->on_display && handlers->on_display(arg);
        }
        write_ack(shown ? "0" : "1");
    } else if (kind == "input") {
        if (handlers) {
            for (int i = 0; i < 2; ++i) read_output(i, handlers, true);
        }
        input_answer answer;
        if (handlers && handlers->on_input)
            answer = handlers->on_input(arg.size() > 2 ? arg.substr(2) : "", arg.starts_with("1"));
        if (answer.what == input_answer::kind::cancelled) return;
        std::string reply = answer.what == input_answer::kind::given ? "0" : "1";
        for (char c : answer.value)
            if (c != '\0' && answer.what == input_answer::kind::given) reply += c;
        reply += '\0';
        write_ack(reply);
    } else if (kind == "clear") {
        if (handlers) {
            for (int i = 0; i < 2; ++i) read_output(i, handlers, true);
            if (handlers->on_clear) handlers->on_clear(arg == "1");
        }
        write_ack("0");
    }
}

// The ack pipe is non-blocking; an answer larger than the pipe is written
// as the driver reads it, until the shell dies.
void shell_session::write_ack(const std::string& bytes) {
    std::size_t sent = 0;
    while (m_ack && sent < bytes.size()) {
        const ssize_t n = ::write(m_ack.get(), bytes.data() + sent, bytes.size() - sent);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN) return;
        pollfd fds[2] = {{m_ack.get(), POLLOUT, 0}, {m_pidfd.get(), POLLIN, 0}};
        if (::poll(fds, m_pidfd ? 2 : 1, 1000) < 0 && errno != EINTR) return;
        if (fds[1].revents & POLLIN) return;
    }
}

void shell_session::read_output(int index, const cell_handlers* handlers, bool flush) {
    unique_fd& fd = m_output[index];
    char buf[65536];
    std::size_t total = 0;
    while (fd && total < max_read_per_turn) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n > 0) {
            m_pending[index].append(buf, static_cast<std::size_t>(n));
            total += static_cast<std::size_t>(n);
        } else if (n == 0) {
            fd.reset();
        } else if (errno != EINTR) {
            break;
        }
    }
    emit_output(index, handlers, flush);
}

void shell_session::emit_output(int index, const cell_handlers* handlers, bool flush) {
    std::string& pending = m_pending[index];
    if (pending.empty()) return;
    std::size_t keep = 0;
    if (index == 1) {
        // bash names the runner in its error messages ("/dev/fd/63: line 2:
        // foo: command not found"); a terminal would say "bash: line 2: ...".
        const std::string_view from = runner_error_prefix;
        std::size_t at = 0;
        while ((at = pending.find(from, at)) != std::string::npos) {
            pending.replace(at, from.size(), "bash: ");
            at += 6;
        }
        if (!flush) keep = partial_suffix(pending, from);
    }
    std::size_t ready = pending.size() - keep;
    if (!flush) ready = complete_prefix_length(std::string_view(pending).substr(0, ready));
    if (ready == 0) return;
    std::string text = sanitize(std::string_view(pending).substr(0, ready));
    pending.erase(0, ready);
    if (handlers && handlers->on_stream) handlers->on_stream(stream_names[index], text);
}

void shell_session::on_shell_death(const cell_handlers* handlers) {
    m_shell_died = true;
    read_control(handlers);
    for (int i = 0; i < 2; ++i) {
        if (handlers) {
            read_output(i, handlers, true);
            emit_output(i, handlers, true);
        }
    }
    // What the shell left in its group (background jobs, the watchdog) goes
    // with it. The shell itself is normally a zombie by now; if it is not
    // (a broken command pipe while it still runs), it is ended here rather
    // than waited for.
    const pid_t pgid = m_pid;
    if (m_reaped) {
        stop_group(pgid, {m_watchdog}, SIGTERM, std::chrono::milliseconds(1000));
    } else if (auto status = stop_group(pgid, {pgid, m_watchdog}, SIGTERM,
                                        std::chrono::milliseconds(1000))) {
        m_exit_wait_status = *status;
    }
    m_pid = -1;
    m_watchdog = -1;
    close_channels();
    m_running = false;
}

cell_outcome shell_session::run_cell(const std::string& code, const cell_handlers& handlers) {
    if (!m_running) throw std::logic_error("run_cell: the shell is not running");
    std::uint64_t stale;
    while (::read(m_interrupts.get(), &stale, sizeof stale) > 0) {
    }
    m_cell_started = m_cell_done = false;
    m_interrupt_requested = m_interrupt_sent = false;
    m_cell_status = 0;
    // Output that background jobs wrote since the last cell is shown now.
    for (int i = 0; i < 2; ++i) read_output(i, &handlers, false);

    cell_outcome outcome;
    const bool sent = send_command("cell", code);
    const auto result = sent ? wait_for([this] { return m_cell_done; }, std::nullopt, &handlers)
                             : wait_result::shell_died;
    if (result == wait_result::shell_died || !sent) {
        if (m_running) on_shell_death(&handlers);
        outcome.end = cell_end::shell_exited;
        outcome.status = shell_exit_code(m_exit_wait_status);
        outcome.how_shell_ended = describe_wait_status(m_exit_wait_status);
        return outcome;
    }
    // The driver wrote `done` after the cell's output: what is still in the
    // pipes belongs to this cell, so it is drained before the reply.
    for (int i = 0; i < 2; ++i) {
        read_output(i, &handlers, false);
        emit_output(i, &handlers, true);
    }
    outcome.status = m_cell_status;
    outcome.end = (m_interrupt_sent && m_cell_status != 0) ? cell_end::interrupted : cell_end::finished;
    return outcome;
}

std::string shell_session::query(const std::string& code, std::chrono::milliseconds timeout) {
    if (!m_running) return "";
    m_reply.reset();
    if (!send_command("query", code)) {
        on_shell_death(nullptr);
        return "";
    }
    const auto result =
        wait_for([this] { return m_reply.has_value(); }, steady::now() + timeout, nullptr);
    if (result == wait_result::timed_out) {
        ++m_stale_replies;
        return "";
    }
    if (result == wait_result::shell_died) return "";
    std::string reply = std::move(*m_reply);
    m_reply.reset();
    return reply;
}

void shell_session::request_interrupt() noexcept {
    const std::uint64_t one = 1;
    (void)!::write(m_interrupts.get(), &one, sizeof one);
}

void shell_session::close_channels() noexcept {
    m_command.reset();
    m_ack.reset();
    m_control.reset();
    m_output[0].reset();
    m_output[1].reset();
    m_lifeline.reset();
    m_pidfd.reset();
}

void shell_session::stop() noexcept {
    if (!m_running) return;
    // Closing the command pipe lets an idle driver leave on its own; the
    // group signal covers a busy shell and everything it started.
    m_command.reset();
    const pid_t pid = m_pid;
    if (pid > 0) stop_group(pid, {pid, m_watchdog}, SIGTERM, std::chrono::milliseconds(2000));
    m_pid = -1;
    m_watchdog = -1;
    close_channels();
    m_running = false;
}

void shell_session::terminate_group() noexcept {
    const pid_t pid = m_pid;
    if (pid > 0) stop_group(pid, {pid, m_watchdog}, SIGTERM, std::chrono::milliseconds(1000));
}

}  // namespace kernex::bash
