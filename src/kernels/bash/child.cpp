#include "child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <thread>

extern char** environ;

namespace kernex::bash {

namespace {

[[noreturn]] void throw_errno(const char* what) {
    throw std::system_error(errno, std::generic_category(), what);
}

// Runs in the forked child before exec: only async-signal-safe calls here,
// since the kernel has other threads (xeus, zmq) whose locks may be held.
void reset_signals_in_child() noexcept {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    // The kernel ignores SIGPIPE; an ignored disposition would be inherited
    // across exec and break pipelines such as `yes | head`.
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2})
        sigaction(sig, &dfl, nullptr);
}

void close_all_but(const std::vector<int>& keep) noexcept {
    int highest = 2;
    for (int fd : keep) highest = std::max(highest, fd);
    for (int fd = 0; fd <= highest; ++fd)
        if (std::find(keep.begin(), keep.end(), fd) == keep.end()) ::close(fd);
    ::close_range(static_cast<unsigned>(highest) + 1, ~0U, 0);
}

bool write_all(int fd, const char* data, std::size_t size) noexcept {
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

}  // namespace

pipe_pair make_pipe(int flags) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | flags) != 0) throw_errno("pipe2");
    return {unique_fd(fds[0]), unique_fd(fds[1])};
}

std::optional<std::string> find_on_path(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        std::size_t end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        std::string dir = dirs.substr(start, end - start);
        if (dir.empty()) dir = ".";
        std::string candidate = dir + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        start = end + 1;
    }
    return std::nullopt;
}

std::vector<std::string> environment_with(const std::vector<std::string>& overrides) {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
        std::string_view entry(*e);
        const auto name = entry.substr(0, entry.find('=') + 1);
        const bool replaced = std::any_of(overrides.begin(), overrides.end(),
            [&](const std::string& o) { return o.compare(0, name.size(), name) == 0; });
        if (!replaced) env.emplace_back(entry);
    }
    env.insert(env.end(), overrides.begin(), overrides.end());
    return env;
}

pid_t spawn_child(const child_spec& spec) {
    // Everything the child needs is built before fork: no allocation after it.
    std::vector<char*> argv;
    for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    std::vector<int> targets;
    for (const auto& [target, source] : spec.fds) targets.push_back(target);
    std::vector<int> staged(spec.fds.size(), -1);

    // exec failures come back through this pipe; a successful exec closes it.
    pipe_pair errors = make_pipe();
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork");
    if (pid == 0) {
        ::setpgid(0, 0);
        if (spec.die_with_parent) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);  // the kernel died before prctl
        }
        reset_signals_in_child();
        // Stage sources above every target so that no dup2 clobbers a source.
        for (std::size_t i = 0; i < spec.fds.size(); ++i)
            staged[i] = ::fcntl(spec.fds[i].second, F_DUPFD, 256);
        for (std::size_t i = 0; i < spec.fds.size(); ++i) ::dup2(staged[i], spec.fds[i].first);
        targets.push_back(errors.write.get());
        close_all_but(targets);
        ::execve(argv[0], argv.data(), envp.data());
        const int err = errno;
        write_all(errors.write.get(), reinterpret_cast<const char*>(&err), sizeof err);
        ::_exit(127);
    }
    ::setpgid(pid, pid);  // also in the parent: no window where the group does not exist
    errors.write.reset();
    int child_errno = 0;
    ssize_t n;
    do {
        n = ::read(errors.read.get(), &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof child_errno)) {
        int status;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        throw std::system_error(child_errno, std::generic_category(), "exec " + spec.argv[0]);
    }
    return pid;
}

pid_t spawn_watchdog(pid_t pgid, int lifeline) {
    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork");
    if (pid == 0) {
        ::setpgid(0, pgid);
        // Forked, not exec'd: without a name of its own, `ps` in the shell
        // would show a second kernex-bash.
        ::prctl(PR_SET_NAME, "kx-watchdog");
        reset_signals_in_child();
        // Interrupts are for the shell's foreground job, not for the watchdog.
        struct sigaction ign {};
        ign.sa_handler = SIG_IGN;
        sigemptyset(&ign.sa_mask);
        sigaction(SIGINT, &ign, nullptr);
        const int null = ::open("/dev/null", O_RDWR);
        for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
        ::dup2(lifeline, 3);
        close_all_but({0, 1, 2, 3});
        char byte;
        for (;;) {
            const ssize_t n = ::read(3, &byte, 1);
            if (n == 0 || (n < 0 && errno != EINTR)) break;  // EOF: the kernel is gone
        }
        ::kill(-pgid, SIGKILL);
        ::_exit(0);
    }
    ::setpgid(pid, pgid);
    return pid;
}

capture_result run_capture(child_spec spec, const std::string& input,
                           std::chrono::milliseconds timeout) {
    pipe_pair in = make_pipe();
    pipe_pair out = make_pipe();
    pipe_pair err = make_pipe();
    spec.fds.insert(spec.fds.end(),
                    {{0, in.read.get()}, {1, out.write.get()}, {2, err.write.get()}});
    const pid_t pid = spawn_child(spec);
    in.read.reset();
    out.write.reset();
    err.write.reset();
    ::fcntl(in.write.get(), F_SETFL, O_NONBLOCK);

    capture_result result;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::size_t written = 0;
    if (input.empty()) in.write.reset();
    while (out.read || err.read) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            result.timed_out = true;
            break;
        }
        pollfd fds[3] = {{out.read.get(), POLLIN, 0}, {err.read.get(), POLLIN, 0},
                         {in.write.get(), POLLOUT, 0}};
        if (::poll(fds, 3, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
        if (fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) {
            const ssize_t n = ::write(in.write.get(), input.data() + written, input.size() - written);
            if (n > 0) written += static_cast<std::size_t>(n);
            if (n < 0 && errno != EAGAIN) written = input.size();  // the child stopped reading
            if (written == input.size()) in.write.reset();
        }
        unique_fd* sources[2] = {&out.read, &err.read};
        std::string* sinks[2] = {&result.out, &result.err};
        for (int i = 0; i < 2; ++i) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[4096];
            const ssize_t n = ::read(sources[i]->get(), buf, sizeof buf);
            if (n > 0)
                sinks[i]->append(buf, static_cast<std::size_t>(n));
            else if (n == 0 || errno != EINTR)
                sources[i]->reset();
        }
    }
    in.write.reset();
    if (result.timed_out) ::kill(-pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!result.timed_out) ::kill(-pid, SIGKILL);  // anything it left in its group
    result.wait_status = status;
    return result;
}

std::optional<int> stop_group(pid_t pgid, const std::vector<pid_t>& reap, int sig,
                              std::chrono::milliseconds grace) noexcept {
    std::optional<int> first_status;
    std::vector<pid_t> pending = reap;
    auto reap_some = [&] {
        for (auto it = pending.begin(); it != pending.end();) {
            int status = 0;
            const pid_t r = ::waitpid(*it, &status, WNOHANG);
            if (r == *it || (r < 0 && errno == ECHILD)) {
                if (r == *it && !reap.empty() && *it == reap.front()) first_status = status;
                it = pending.erase(it);
            } else {
                ++it;
            }
        }
    };
    // A group is empty when kill(-pgid, 0) fails; our own zombies still count
    // as members, so they are reaped on every turn.
    auto wait_empty = [&](std::chrono::milliseconds limit) {
        const auto until = std::chrono::steady_clock::now() + limit;
        while (true) {
            reap_some();
            if (::kill(-pgid, 0) != 0 && pending.empty()) return true;
            if (std::chrono::steady_clock::now() >= until) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    };
    if (pgid > 0) {
        ::kill(-pgid, sig);
        ::kill(-pgid, SIGCONT);  // a stopped process would never see the signal
        if (!wait_empty(grace)) {
            ::kill(-pgid, SIGKILL);
            wait_empty(std::chrono::milliseconds(5000));
        }
    }
    // Whatever is still ours is waited for without limit: SIGKILL cannot be refused.
    for (pid_t pid : pending) {
        int status = 0;
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (!reap.empty() && pid == reap.front()) first_status = status;
    }
    return first_status;
}

}  // namespace kernex::bash
