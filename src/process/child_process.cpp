#include "kernex/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <thread>
#include <utility>

#include "kernex/error.hpp"
#include "process/process_internal.hpp"

extern char** environ;

namespace kernex {

namespace {

namespace fs = std::filesystem;

// Owns the pieces posix_spawn needs so every exit path releases them.
struct spawn_setup {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    spawn_setup() {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
    }
    ~spawn_setup() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    spawn_setup(const spawn_setup&) = delete;
    spawn_setup& operator=(const spawn_setup&) = delete;
};

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

    spawn_setup setup;
    fd_guard out_read, out_write, err_read, err_write;
    auto* actions = &setup.actions;
    posix_spawn_file_actions_addopen(actions, 0, "/dev/null", O_RDONLY, 0);

    auto redirect = [&](int target, output_mode mode, fd_guard& read_end, fd_guard& write_end) {
        switch (mode) {
        case output_mode::inherit: break;
        case output_mode::null:
            posix_spawn_file_actions_addopen(actions, target, "/dev/null", O_WRONLY, 0);
            break;
        case output_mode::file:
            posix_spawn_file_actions_addopen(actions, target, options.log_file.c_str(),
                                             O_WRONLY | O_CREAT | O_APPEND, 0600);
            break;
        case output_mode::pipe: {
            int fds[2];
            make_pipe(fds);
            read_end.fd = fds[0];
            write_end.fd = fds[1];
            posix_spawn_file_actions_adddup2(actions, fds[1], target);
            break;
        }
        }
    };
    redirect(1, options.stdout_mode, out_read, out_write);
    const bool share_stdout =
        options.stderr_mode == options.stdout_mode &&
        ((options.stderr_mode == output_mode::pipe && options.merge_stderr) || options.stderr_mode == output_mode::file);
    if (share_stdout)
        posix_spawn_file_actions_adddup2(actions, 1, 2);  // one open file: stdout and stderr in arrival order
    else
        redirect(2, options.stderr_mode, err_read, err_write);
    if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(actions, cwd.c_str());
    posix_spawn_file_actions_addclosefrom_np(actions, 3);

    // Own session (so own process group: signal_group reaches every
    // descendant that stays in it), an empty signal mask and default
    // dispositions: what we block or ignore (SIGPIPE, say) is not the child's business.
    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&setup.attr, &empty);
    posix_spawnattr_setsigdefault(&setup.attr, &all);

    std::vector<char*> argv;
    argv.reserve(options.argv.size() + 1);
    for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);

    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, file->c_str(), actions, &setup.attr, argv.data(), env.pointers.data());
    if (rc != 0) throw_launch(program, std::strerror(rc));

    m_pid = pid;
    // The pid cannot be reused before we reap it, so this names our child.
    m_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    m_stdout = out_read.release();
    m_stderr = err_read.release();
}

child_process::~child_process() { stop(); }

child_process::child_process(child_process&& other) noexcept
    : m_pid(std::exchange(other.m_pid, -1)),
      m_pidfd(std::exchange(other.m_pidfd, -1)),
      m_stdout(std::exchange(other.m_stdout, -1)),
      m_stderr(std::exchange(other.m_stderr, -1)),
      m_status(std::exchange(other.m_status, std::nullopt)) {}

child_process& child_process::operator=(child_process&& other) noexcept {
    if (this != &other) {
        stop();
        m_pid = std::exchange(other.m_pid, -1);
        m_pidfd = std::exchange(other.m_pidfd, -1);
        m_stdout = std::exchange(other.m_stdout, -1);
        m_stderr = std::exchange(other.m_stderr, -1);
        m_status = std::exchange(other.m_status, std::nullopt);
    }
    return *this;
}

void child_process::close_stdout() noexcept { close_fd(m_stdout); }

bool child_process::running() noexcept { return !wait_until(clock::now()); }

std::optional<int> child_process::wait_until(clock::time_point deadline) noexcept {
    if (!m_status && m_pid >= 0) m_status = detail::wait_exit_until(m_pid, m_pidfd, deadline);
    return m_status;
}

bool child_process::signal_group(int sig) noexcept {
    if (m_pid < 0) return false;
    // The unreaped leader keeps the group id ours, so this cannot reach a
    // stranger's group; what is left of ours is signalled even after the
    // leader exited, but only a living leader counts as success.
    const bool sent = ::kill(-m_pid, sig) == 0;
    return sent && running();
}

void child_process::reap_group() noexcept {
    ::kill(-m_pid, SIGKILL);
    // SIGKILL cannot be caught; the bound only matters for a process stuck in
    // uninterruptible I/O, which we would rather leave than hang on.
    if (!wait_until(clock::now() + std::chrono::seconds(10))) return;
    int status = 0;
    pid_t r;
    while ((r = ::waitpid(m_pid, &status, 0)) < 0 && errno == EINTR) {}
    if (r == m_pid) m_status = status;
}

void child_process::stop(std::chrono::milliseconds grace) noexcept {
    if (m_pid >= 0) {
        if (grace.count() > 0 && running() && ::kill(-m_pid, SIGTERM) == 0)
            detail::wait_exit_until(m_pid, m_pidfd, clock::now() + grace);
        reap_group();
        m_pid = -1;
    }
    close_fd(m_pidfd);
    close_fd(m_stdout);
    close_fd(m_stderr);
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
