#include "kernex/process.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <thread>
#include <utility>

#include "kernex/error.hpp"
#include "process/process_internal.hpp"
#include "process/reaper.hpp"

extern char** environ;

namespace kernex {

namespace {

namespace fs = std::filesystem;

// Closes an fd at scope exit unless released.
struct fd_guard {
    int fd = -1;
    explicit fd_guard(int f = -1) noexcept : fd(f) {}
    ~fd_guard() { reset(); }
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    void reset() noexcept {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
    int release() noexcept { return std::exchange(fd, -1); }
};

void close_fd(int& fd) noexcept {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

[[noreturn]] void throw_launch(const std::string& program, const std::string& why) {
    throw error(errc::launch_failed, "cannot run '" + program + "': " + why);
}

// A pipe whose read end (ours) is non-blocking and whose write end (the
// child's) is left blocking: the O_NONBLOCK flag lives on each end's open file
// description, so the child's stdout behaves as an ordinary pipe.
void make_pipe(int fds[2]) {
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw error(errc::io_error, std::string("pipe2 failed: ") + std::strerror(errno));
    ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
}

struct environment {
    std::vector<std::string> entries;  // "NAME=value"
    std::vector<char*> pointers;       // null-terminated, into entries
    std::string path;                  // the child's PATH
    bool has_path = false;
};

environment make_environment(const spawn_options& options) {
    environment env;
    std::map<std::string_view, std::string_view> vars;
    if (options.inherit_environment) {
        for (char** e = environ; e && *e; ++e) {
            std::string_view entry(*e);
            const auto eq = entry.find('=');
            if (eq == std::string_view::npos) continue;
            vars.insert_or_assign(entry.substr(0, eq), entry.substr(eq + 1));
        }
    }
    for (const auto& [name, value] : options.env) vars.insert_or_assign(name, value);
    env.entries.reserve(vars.size());
    for (const auto& [name, value] : vars) {
        std::string entry;
        entry.reserve(name.size() + 1 + value.size());
        entry.append(name).append("=").append(value);
        env.entries.push_back(std::move(entry));
        if (name == "PATH") {
            env.path = value;
            env.has_path = true;
        }
    }
    env.pointers.reserve(env.entries.size() + 1);
    for (auto& entry : env.entries) env.pointers.push_back(entry.data());
    env.pointers.push_back(nullptr);
    return env;
}

// Whether this process may make pid and mount namespaces: CAP_SYS_ADMIN in
// its effective set (root, or root of a user namespace). Asked first
// because a clone refused for the privilege fails only after the kernel
// has copied our whole address space for it.
bool may_make_namespaces() noexcept {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &header, data) != 0) return true;  // cannot tell: the clone says
    return (data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective & CAP_TO_MASK(CAP_SYS_ADMIN)) != 0;
}

}  // namespace

namespace detail {

int poll_timeout(clock::time_point deadline) noexcept {
    const auto left = deadline - clock::now();
    if (left <= clock::duration::zero()) return 0;
    // Rounded up so that a wait never ends just short of its deadline.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

std::optional<int> exit_status(int pid) noexcept {
    siginfo_t info{};
    // WNOWAIT leaves the zombie in place: its pid (and so its group id) stays
    // reserved until we reap it.
    while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        // ECHILD: reaped behind our back (SIGCHLD ignored by the application);
        // its status is lost, so report a clean exit rather than invent a failure.
        if (errno != EINTR) return 0;
    }
    if (info.si_pid == 0) return std::nullopt;
    switch (info.si_code) {
    case CLD_EXITED: return W_EXITCODE(info.si_status, 0);
    case CLD_DUMPED: return W_EXITCODE(0, info.si_status) | WCOREFLAG;
    default: return W_EXITCODE(0, info.si_status);  // CLD_KILLED
    }
}

std::optional<int> wait_exit_until(int pid, int pidfd, clock::time_point deadline) noexcept {
    for (;;) {
        if (auto status = exit_status(pid)) return status;
        const int ms = poll_timeout(deadline);
        if (ms == 0) return std::nullopt;
        if (pidfd >= 0) {
            pollfd p{pidfd, POLLIN, 0};
            ::poll(&p, 1, ms);
        } else {
            // No pidfd (kernel < 5.3): look at the status at a short interval.
            std::this_thread::sleep_for(std::chrono::milliseconds(std::min(ms, 5)));
        }
    }
}

}  // namespace detail

std::optional<fs::path> find_program(std::string_view name, std::string_view path, const fs::path& cwd) {
    auto executable = [](const fs::path& p) {
        struct stat st{};
        return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
    };
    auto anchored = [&](fs::path p) { return p.is_relative() && !cwd.empty() ? cwd / p : p; };
    if (name.empty()) return std::nullopt;
    if (name.find('/') != std::string_view::npos) {
        fs::path p = anchored(fs::path(name));
        return executable(p) ? std::optional<fs::path>(p) : std::nullopt;
    }
    std::string default_path;
    if (path.empty()) {
        const std::size_t n = ::confstr(_CS_PATH, nullptr, 0);
        default_path.resize(n);
        if (n > 0) ::confstr(_CS_PATH, default_path.data(), n);
        default_path.resize(std::strlen(default_path.c_str()));
        path = default_path;
    }
    for (;;) {
        const auto colon = path.find(':');
        std::string_view dir = path.substr(0, colon);
        // An empty entry means the current directory, as for execvp.
        fs::path candidate = anchored(fs::path(dir.empty() ? std::string_view(".") : dir) / name);
        if (executable(candidate)) return candidate;
        if (colon == std::string_view::npos) return std::nullopt;
        path.remove_prefix(colon + 1);
    }
}

child_process::child_process(const spawn_options& options) {
    if (options.argv.empty()) throw error(errc::invalid_argument, "cannot spawn a process: argv is empty");
    const std::string& program = options.argv[0];
    environment env = make_environment(options);
    const fs::path cwd = options.cwd.value_or(fs::path());
    std::error_code ec;
    if (!cwd.empty() && !fs::is_directory(cwd, ec))
        throw_launch(program, "working directory '" + cwd.string() + "' does not exist");

    std::optional<fs::path> file = find_program(program, env.has_path ? std::string_view(env.path) : "", cwd);
    if (!file) {
        const bool has_slash = program.find('/') != std::string::npos;
        const fs::path target = has_slash && !cwd.empty() && fs::path(program).is_relative() ? cwd / program
                                                                                              : fs::path(program);
        if (has_slash && ::access(target.c_str(), F_OK) == 0)
            throw_launch(program, "permission denied (not an executable file)");
        throw_launch(program, has_slash ? "no such file"
                                        : "not found on PATH (" + (env.has_path ? env.path : "default path") + ")");
    }
    // exec resolves a relative name against the program's cwd, which the
    // reaper changes only in the program: anchor it here.
    if (file->is_relative()) file = fs::absolute(*file);

    // Everything the forked reaper needs is made here: after fork() it may
    // only make plain system calls.
    fd_guard null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (null_fd.fd < 0) throw error(errc::io_error, std::string("cannot open /dev/null: ") + std::strerror(errno));
    fd_guard out_read, out_write, err_read, err_write, log_fd;
    auto target_fd = [&](int own, output_mode mode, fd_guard& read_end, fd_guard& write_end) -> int {
        switch (mode) {
        case output_mode::inherit: return own;
        case output_mode::null: return null_fd.fd;
        case output_mode::file:
            if (log_fd.fd < 0) {
                log_fd.fd = ::open(options.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                if (log_fd.fd < 0)
                    throw_launch(program, "cannot open its log file " + options.log_file.string() + ": " +
                                              std::strerror(errno));
            }
            return log_fd.fd;
        case output_mode::pipe: {
            int fds[2];
            make_pipe(fds);
            read_end.fd = fds[0];
            write_end.fd = fds[1];
            return fds[1];
        }
        }
        return null_fd.fd;
    };
    fd_guard in_read, in_write;
    if (options.stdin_pipe) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0)
            throw error(errc::io_error, std::string("pipe2 failed: ") + std::strerror(errno));
        in_read.fd = fds[0];
        in_write.fd = fds[1];
        ::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK);
    }
    const int out_fd = target_fd(1, options.stdout_mode, out_read, out_write);
    const bool share_stdout =
        options.stderr_mode == options.stdout_mode &&
        ((options.stderr_mode == output_mode::pipe && options.merge_stderr) || options.stderr_mode == output_mode::file);
    // One open file for both: stdout and stderr in arrival order.
    const int err_fd = share_stdout ? out_fd : target_fd(2, options.stderr_mode, err_read, err_write);

    // The lifeline is a socket so that a byte sent after the reaper is gone
    // gives EPIPE, not SIGPIPE.
    int life[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, life) != 0)
        throw error(errc::io_error, std::string("socketpair failed: ") + std::strerror(errno));
    fd_guard life_reaper(life[0]), life_ours(life[1]);
    int report[2];
    if (::pipe2(report, O_CLOEXEC) != 0)
        throw error(errc::io_error, std::string("pipe2 failed: ") + std::strerror(errno));
    fd_guard report_read(report[0]), report_write(report[1]);

    std::vector<char*> argv;
    argv.reserve(options.argv.size() + 1);
    for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> remove_paths;
    for (const auto& p : options.remove_if_orphaned)
        if (!p.empty()) remove_paths.push_back(fs::absolute(p).string());
    std::vector<const char*> remove_pointers;
    for (const auto& p : remove_paths) remove_pointers.push_back(p.c_str());
    remove_pointers.push_back(nullptr);
    std::vector<detail::reaper_limit> limits;
    for (const auto& [resource, value] : options.rlimits)
        limits.push_back({resource, static_cast<rlim_t>(value)});
    rlimit nofile{};
    ::getrlimit(RLIMIT_NOFILE, &nofile);
    const std::string file_name = file->string();
    const std::string cwd_name = cwd.empty() ? std::string() : fs::absolute(cwd).string();
    const std::string tree_name =
        options.remove_tree_if_orphaned.empty() ? std::string() : fs::absolute(options.remove_tree_if_orphaned).string();

    detail::reaper_plan plan;
    plan.file = file_name.c_str();
    plan.argv = argv.data();
    plan.envp = env.pointers.data();
    plan.cwd = cwd_name.empty() ? nullptr : cwd_name.c_str();
    plan.stdin_fd = options.stdin_pipe ? in_read.fd : null_fd.fd;
    plan.stdout_fd = out_fd;
    plan.stderr_fd = err_fd;
    plan.lifeline_fd = life_reaper.fd;
    plan.report_fd = report_write.fd;
    plan.remove_if_orphaned = remove_pointers.data();
    plan.remove_tree_if_orphaned = tree_name.empty() ? nullptr : tree_name.c_str();
    plan.linger = options.linger && !tree_name.empty();
    plan.limits = limits.data();
    plan.limit_count = limits.size();
    plan.max_fd = static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, 65536));

    // Every signal blocked across fork: the reaper must not run a handler
    // of ours, nor die of a signal before it has chosen to ignore them.
    sigset_t all, old;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t reaper = -1;
    if (options.own_pid_namespace && may_make_namespaces()) {
        // A raw clone: the child runs only plain system calls (run_reaper),
        // so glibc's fork handlers are not needed. A mount namespace too,
        // for the namespace's own /proc. Without the privilege
        // (EPERM) or with namespaces used up, a plain reaper as below.
        reaper = static_cast<pid_t>(::syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
        m_own_namespace = reaper > 0;
    }
    if (reaper < 0) reaper = ::fork();
    if (reaper == 0) detail::run_reaper(plan);
    const int fork_errno = errno;
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (reaper < 0) throw_launch(program, std::string("fork failed: ") + std::strerror(fork_errno));
    report_write.reset();
    life_reaper.reset();
    out_write.reset();
    err_write.reset();
    in_read.reset();

    m_group = reaper;
    m_linger = plan.linger;
    m_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, reaper, 0));
    m_lifeline = life_ours.release();

    // The reaper reports the program's pid; the program, an exec that
    // failed. End of file: exec succeeded (or everything is gone).
    int exec_errno = 0;
    const auto deadline = clock::now() + std::chrono::seconds(10);
    std::string records;
    for (;;) {
        pollfd p{report_read.fd, POLLIN, 0};
        const int n = ::poll(&p, 1, detail::poll_timeout(deadline));
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        char buffer[64];
        const ssize_t got = ::read(report_read.fd, buffer, sizeof buffer);
        if (got > 0) {
            records.append(buffer, static_cast<std::size_t>(got));
        } else if (got == 0 || errno != EINTR) {
            break;
        }
    }
    for (std::size_t at = 0; at + 8 <= records.size(); at += 8) {
        std::int32_t value = 0;
        std::memcpy(&value, records.data() + at + 4, sizeof value);
        if (records[at] == 'P') m_pid = value;
        if (records[at] == 'E') exec_errno = value;
    }
    // A program in a namespace of its own that could not tell its pid: its
    // reaper's (whose signals from kernex it ignores, SIGKILL ending all).
    if (m_own_namespace && exec_errno == 0 && m_pid < 0) m_pid = reaper;
    if (exec_errno != 0 || m_pid < 0) {
        stop(std::chrono::milliseconds(0));
        throw_launch(program, exec_errno != 0 ? std::strerror(exec_errno) : "its reaper did not start it");
    }
    m_stdout = out_read.release();
    m_stderr = err_read.release();
    m_stdin = in_write.release();
}

child_process::~child_process() { stop(); }

child_process::child_process(child_process&& other) noexcept
    : m_pid(std::exchange(other.m_pid, -1)),
      m_pidfd(std::exchange(other.m_pidfd, -1)),
      m_stdout(std::exchange(other.m_stdout, -1)),
      m_stderr(std::exchange(other.m_stderr, -1)),
      m_stdin(std::exchange(other.m_stdin, -1)),
      m_status(std::exchange(other.m_status, std::nullopt)),
      m_group(std::exchange(other.m_group, -1)),
      m_own_namespace(std::exchange(other.m_own_namespace, false)),
      m_linger(std::exchange(other.m_linger, false)),
      m_lifeline(std::exchange(other.m_lifeline, -1)) {}

child_process& child_process::operator=(child_process&& other) noexcept {
    if (this != &other) {
        stop();
        m_pid = std::exchange(other.m_pid, -1);
        m_pidfd = std::exchange(other.m_pidfd, -1);
        m_stdout = std::exchange(other.m_stdout, -1);
        m_stderr = std::exchange(other.m_stderr, -1);
        m_stdin = std::exchange(other.m_stdin, -1);
        m_status = std::exchange(other.m_status, std::nullopt);
        m_group = std::exchange(other.m_group, -1);
        m_own_namespace = std::exchange(other.m_own_namespace, false);
        m_linger = std::exchange(other.m_linger, false);
        m_lifeline = std::exchange(other.m_lifeline, -1);
    }
    return *this;
}

void child_process::close_stdout() noexcept { close_fd(m_stdout); }

bool child_process::running() noexcept { return !wait_until(clock::now()); }

std::optional<int> child_process::wait_until(clock::time_point deadline) noexcept {
    if (!m_status && m_group >= 0) {
        if (m_linger) return m_status = wait_lingering(deadline);
        m_status = detail::wait_exit_until(m_group, m_pidfd, deadline);
        if (m_status) m_status = program_status(*m_status);
    }
    return m_status;
}

std::optional<int> child_process::wait_lingering(clock::time_point deadline) noexcept {
    for (;;) {
        // Said once the program's tree is gone; the reaper stays.
        if (auto status = said_status()) return status;
        // Gone without a word (SIGKILLed by someone): its own status.
        if (auto status = detail::exit_status(m_group)) return program_status(*status);
        const int ms = detail::poll_timeout(deadline);
        if (ms == 0) return std::nullopt;
        pollfd p[2] = {{m_lifeline, POLLIN, 0}, {m_pidfd, POLLIN, 0}};
        ::poll(p, 2, ms);
        // The socket's end without a record: the reaper is exiting, its
        // zombie comes next (the lifeline stays readable until then).
        if (p[0].revents & (POLLHUP | POLLERR)) std::this_thread::yield();
    }
}

std::optional<int> child_process::said_status() noexcept {
    // 'S' and the program's wait status, taken off the lifeline only whole.
    char record[5];
    ssize_t n;
    while ((n = ::recv(m_lifeline, record, sizeof record, MSG_PEEK | MSG_DONTWAIT)) < 0 && errno == EINTR) {}
    if (n != static_cast<ssize_t>(sizeof record) || record[0] != 'S') return std::nullopt;
    while (::recv(m_lifeline, record, sizeof record, MSG_DONTWAIT) < 0 && errno == EINTR) {}
    std::int32_t status = 0;
    std::memcpy(&status, record + 1, sizeof status);
    return status;
}

int child_process::program_status(int reaper_status) noexcept {
    // The reaper's last words on the lifeline: 'S' and the program's wait
    // status (an init of a pid namespace cannot die of a signal it sends
    // itself, so its own status may not be the program's). A reaper that
    // was SIGKILLed said nothing: its own status it is.
    char record[5];
    std::size_t got = 0;
    while (m_lifeline >= 0 && got < sizeof record) {
        const ssize_t n = ::recv(m_lifeline, record + got, sizeof record - got, MSG_DONTWAIT);
        if (n > 0) {
            got += static_cast<std::size_t>(n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            break;
        }
    }
    if (got != sizeof record || record[0] != 'S') return reaper_status;
    std::int32_t status = 0;
    std::memcpy(&status, record + 1, sizeof status);
    return status;
}

bool child_process::signal_group(int sig) noexcept {
    if (m_group < 0) return false;
    // The unreaped reaper keeps the group id ours, so this cannot reach a
    // stranger's group; only a living program counts as success.
    const bool sent = ::kill(-m_group, sig) == 0;
    return sent && running();
}

void child_process::kill() noexcept {
    if (m_lifeline >= 0) [[maybe_unused]] auto n = ::send(m_lifeline, "k", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void child_process::stop(std::chrono::milliseconds grace) noexcept {
    if (m_group >= 0) {
        if (grace.count() > 0 && running() && ::kill(-m_group, SIGTERM) == 0) wait_until(clock::now() + grace);
        // Kill what is left, and go (a lingering reaper: leave its tree alone).
        if (m_lifeline >= 0) [[maybe_unused]] auto n = ::send(m_lifeline, "l", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        // SIGKILL cannot be caught; the bound only matters for a process
        // stuck in uninterruptible I/O, which we would rather leave than hang on.
        if (!detail::wait_exit_until(m_group, m_pidfd, clock::now() + std::chrono::seconds(10))) {
            ::kill(-m_group, SIGKILL);
            ::kill(m_group, SIGKILL);
        }
        int status = 0;
        pid_t r;
        while ((r = ::waitpid(m_group, &status, 0)) < 0 && errno == EINTR) {}
        if (r == m_group && !m_status) m_status = program_status(status);
        m_group = -1;
        m_pid = -1;
    }
    close_fd(m_lifeline);
    close_fd(m_pidfd);
    close_fd(m_stdout);
    close_fd(m_stderr);
    close_fd(m_stdin);
}

std::string describe_status(int wait_status) {
    if (WIFEXITED(wait_status)) return "exit code " + std::to_string(WEXITSTATUS(wait_status));
    if (WIFSIGNALED(wait_status)) {
        const int sig = WTERMSIG(wait_status);
        const char* name = ::sigabbrev_np(sig);
        std::string text = "killed by signal " + std::to_string(sig);
        if (name) text += std::string(" (SIG") + name + ")";
        if (WCOREDUMP(wait_status)) text += ", core dumped";
        return text;
    }
    return "wait status " + std::to_string(wait_status);
}

int exit_code_of(int wait_status) noexcept {
    if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
    return 1;
}

}  // namespace kernex
