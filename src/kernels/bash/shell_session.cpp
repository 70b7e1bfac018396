#include "shell_session.hpp"

#include "driver_script.hpp"
#include "utf8.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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
// How long a page may sit in an output pipe before its write's event before
// it is taken for the first page of a write larger than the pipe (whose
// writer waits for us, and whose event comes only when all of it is read).
constexpr auto unannounced_grace = std::chrono::milliseconds(2);
// Pages of one stream in a row are published together, once this much is
// gathered or this long after the first: one message a page would be
// thousands a second, and xeus's iopub drops messages past its high-water
// mark (the cell's idle status among them).
constexpr std::size_t publish_bytes = 64 * 1024;
constexpr auto publish_interval = std::chrono::milliseconds(10);
// Output that switches streams more often than this per interval waits (and
// its writer with it) rather than flood iopub with a message per switch.
constexpr int max_switches_per_interval = 16;
constexpr const char* stream_names[2] = {"stdout", "stderr"};

void set_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        throw std::system_error(errno, std::generic_category(), "fcntl");
}

// Packet mode (each write its own page; O_DIRECT, Linux 3.4) where there is one.
pipe_pair make_output_pipe() {
    try {
        return make_pipe(O_DIRECT);
    } catch (const std::system_error&) {
        return make_pipe();
    }
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
    pipe_pair out = make_output_pipe();
    pipe_pair err = make_output_pipe();
    setup_write_order(out.read.get(), err.read.get());
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

        const bool ordered = handlers && m_write_events;
        if (ordered) timeout_ms = write_order_poll_timeout(timeout_ms);
        const bool throttled = ordered && m_throttled;

        enum { control, pidfd, interrupts, out, err, events, count };
        // A pipe whose page waits for its write's event is not polled (it
        // stays readable): the event, or the grace's end, wakes us.
        pollfd fds[count] = {
            {m_control.get(), POLLIN, 0},
            {m_pidfd.get(), POLLIN, 0},
            {handlers ? m_interrupts.get() : -1, POLLIN, 0},
            {handlers && !throttled && !(ordered && m_unannounced_since[0]) ? m_output[0].get() : -1, POLLIN, 0},
            {handlers && !throttled && !(ordered && m_unannounced_since[1]) ? m_output[1].get() : -1, POLLIN, 0},
            {ordered && !throttled ? m_write_events.get() : -1, POLLIN, 0}};
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
        if (ordered)
            read_outputs(handlers, false);
        else
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
            read_outputs(handlers, false);
            shown = handlers->on_display && handlers->on_display(arg);
        }
        write_ack(shown ? "0" : "1");
    } else if (kind == "input") {
        if (handlers) read_outputs(handlers, true);
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
            read_outputs(handlers, true);
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

void shell_session::setup_write_order(int out, int err) noexcept {
    m_write_events.reset();
    m_write_order.clear();
    m_order_lost = false;
    m_unpublished = -1;
    for (int i = 0; i < 2; ++i) {
        m_watch[i] = -1;
        m_large_write[i] = false;
        m_unannounced_since[i].reset();
    }
    const long page = ::sysconf(_SC_PAGESIZE);
    unique_fd events(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!events || page <= 0) return;
    const int pipes[2] = {out, err};
    for (int i = 0; i < 2; ++i) {
        if (::fcntl(pipes[i], F_SETPIPE_SZ, static_cast<int>(page)) < 0) return;
        // The pipe's own inode, reached through /proc (a pipe has no other name).
        const std::string path = "/proc/self/fd/" + std::to_string(pipes[i]);
        m_watch[i] = ::inotify_add_watch(events.get(), path.c_str(), IN_MODIFY);
        if (m_watch[i] < 0) return;
    }
    m_write_events = std::move(events);
}

void shell_session::read_write_order() {
    alignas(inotify_event) char buf[8192];
    while (m_write_events) {
        const ssize_t n = ::read(m_write_events.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        for (ssize_t at = 0; at + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
            inotify_event event;
            std::memcpy(&event, buf + at, sizeof event);
            at += static_cast<ssize_t>(sizeof event + event.len);
            if (event.mask & IN_Q_OVERFLOW) m_order_lost = true;
            if (!(event.mask & IN_MODIFY)) continue;
            for (int i = 0; i < 2; ++i)
                if (event.wd == m_watch[i]) m_write_order.push_back(i);
        }
    }
}

std::size_t shell_session::read_page(int index, const cell_handlers* handlers) {
    unique_fd& fd = m_output[index];
    char buf[65536];
    ssize_t n;
    do {
        n = fd ? ::read(fd.get(), buf, sizeof buf) : -1;
    } while (n < 0 && errno == EINTR);
    if (n == 0) fd.reset();
    if (n <= 0) return 0;
    // What the other stream read before this page is published first; pages
    // of one stream in a row go out as one message.
    if (m_unpublished >= 0 && m_unpublished != index) emit_output(m_unpublished, handlers, false);
    if (m_unpublished != index) m_unpublished_since = steady::now();
    m_unpublished = index;
    m_pending[index].append(buf, static_cast<std::size_t>(n));
    return static_cast<std::size_t>(n);
}

// Reads what the shell wrote to stdout and stderr, in the order it wrote it.
// A packet-mode pipe of one page gives one read per write up to a page, and a
// writer with a page unread waits, so each pipe holds at most one write
// whose event (queued as the write returns) says where it stands.
void shell_session::read_outputs(const cell_handlers* handlers, bool flush) {
    read_write_order();
    if (!m_write_events || m_order_lost) {
        m_order_lost = false;
        m_write_order.clear();
        for (int i = 0; i < 2; ++i) read_output(i, handlers, flush);
        return;
    }
    const auto queued = [this](int i) {
        return std::find(m_write_order.begin(), m_write_order.end(), i) != m_write_order.end();
    };
    std::size_t total = 0;
    m_throttled = false;
    const auto switch_allowed = [&](int i) {
        if (flush || m_unpublished < 0 || m_unpublished == i) return true;
        const auto now = steady::now();
        if (now - m_window_start >= publish_interval) {
            m_window_start = now;
            m_window_messages = 0;
        }
        m_throttled = m_window_messages >= max_switches_per_interval;
        return !m_throttled;
    };
    while (!m_write_order.empty() && total < max_read_per_turn) {
        const int i = m_write_order.front();
        if (!switch_allowed(i)) break;
        m_write_order.pop_front();
        m_unannounced_since[i].reset();
        if (m_large_write[i]) {
            m_large_write[i] = false;
            // A large write's first pages were read as they came. The pipe now
            // holds its last page, unless a later write to the same stream has
            // completed too: then that page was read already, and the one there
            // is the later write's, to be read at its own event.
            if (queued(i)) continue;
        }
        total += read_page(i, handlers);
        read_write_order();
    }
    // Pages no event has announced: the first pages of a write larger than the
    // pipe (its writer waits for us, its event comes when it is all read), or
    // a write whose event is on its way; the latter is waited for briefly.
    for (int i = 0; i < 2; ++i) {
        if (!m_output[i] || queued(i) || m_throttled || !switch_allowed(i)) continue;
        pollfd p{m_output[i].get(), POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) {
            m_unannounced_since[i].reset();
            continue;
        }
        const auto now = steady::now();
        if (!(p.revents & POLLIN) || flush || m_large_write[i] ||
            (m_unannounced_since[i] && now - *m_unannounced_since[i] >= unannounced_grace)) {
            if (p.revents & POLLIN) m_large_write[i] = true;
            m_unannounced_since[i].reset();
            read_page(i, handlers);
        } else if (!m_unannounced_since[i]) {
            m_unannounced_since[i] = now;
        }
    }
    if (m_unpublished >= 0 && !flush && m_pending[m_unpublished].size() < publish_bytes &&
        steady::now() - m_unpublished_since < publish_interval)
        return;
    // The stream read last goes last (the other holds at most a cut character).
    const int last = m_unpublished < 0 ? 1 : m_unpublished;
    emit_output(1 - last, handlers, flush);
    emit_output(last, handlers, flush);
    m_unpublished = -1;
}

int shell_session::write_order_poll_timeout(int timeout_ms) const {
    const auto until = [&](steady::time_point when) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(when - steady::now());
        const int ms = static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
        if (timeout_ms < 0 || ms < timeout_ms) timeout_ms = ms;
    };
    for (const auto& since : m_unannounced_since)
        if (since) until(*since + unannounced_grace);
    if (m_unpublished >= 0) until(m_unpublished_since + publish_interval);
    if (m_throttled) until(m_window_start + publish_interval);
    return timeout_ms;
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
    if (handlers && handlers->on_stream) {
        ++m_window_messages;
        handlers->on_stream(stream_names[index], text);
    }
}

void shell_session::on_shell_death(const cell_handlers* handlers) {
    m_shell_died = true;
    read_control(handlers);
    if (handlers) read_outputs(handlers, true);
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
    read_outputs(&handlers, false);

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
    read_outputs(&handlers, true);
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
    m_write_events.reset();
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
