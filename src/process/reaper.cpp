#include "process/reaper.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <ctime>

#include "process/remove_tree.hpp"

// Nothing here may allocate, lock or touch state another thread of the
// parent may have held at fork(): plain system calls and stack buffers only.

namespace kernex::detail {

namespace {

// The fds the reaper keeps, at fixed numbers.
constexpr int lifeline = 3;
constexpr int report = 4;
constexpr int program_in = 5;
constexpr int program_out = 6;
constexpr int program_err = 7;
constexpr int host_proc = 8;  // in a pid namespace of our own: the host's /proc
constexpr int first_free = 9;

void close_from(int first, int max_fd) noexcept {
#ifdef SYS_close_range
    if (::syscall(SYS_close_range, first, ~0U, 0) == 0) return;
#endif
    for (int fd = first; fd < max_fd; ++fd) ::close(fd);
}

void write_record(char tag, std::int32_t value) noexcept {
    char record[8] = {tag, 0, 0, 0};
    __builtin_memcpy(record + 4, &value, sizeof value);
    [[maybe_unused]] auto n = ::write(report, record, sizeof record);
}

void sleep_ms(long ms) noexcept {
    timespec ts{0, ms * 1'000'000L};
    while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

struct reap_state {
    pid_t program = -1;
    int status = 0;
    bool program_done = false;
};

// Reaps every child that has ended. Returns how many, -1 once there is no child at all.
int reap_ready(reap_state& state) noexcept {
    int reaped = 0;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(-1, &status, WNOHANG | __WALL);
        if (r > 0) {
            ++reaped;
            if (r == state.program) {
                state.status = status;
                state.program_done = true;
            }
        } else if (r == 0) {
            return reaped;
        } else if (errno != EINTR) {
            return reaped > 0 ? reaped : -1;  // ECHILD
        }
    }
}

// Parses decimal pids out of text arriving in chunks, calling on_pid for each.
struct pid_parser {
    long current = -1;
    template <typename F>
    void feed(const char* data, long n, F&& on_pid) noexcept {
        for (long i = 0; i < n; ++i) {
            const char c = data[i];
            if (c >= '0' && c <= '9') {
                current = (current < 0 ? 0 : current * 10) + (c - '0');
            } else {
                finish(on_pid);
            }
        }
    }
    template <typename F>
    void finish(F&& on_pid) noexcept {
        if (current > 0) on_pid(static_cast<pid_t>(current));
        current = -1;
    }
};

// SIGKILLs every child listed in /proc/thread-self/children (the reaper is
// single-threaded: its one thread is the parent of all its children).
// Returns how many, or -1 when the file cannot be read (a kernel without
// CONFIG_PROC_CHILDREN).
int kill_children_listed() noexcept {
    const int fd = ::open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int killed = 0;
    pid_parser parser;
    auto kill_one = [&](pid_t pid) {
        if (::kill(pid, SIGKILL) == 0) ++killed;
    };
    char buffer[4096];
    for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n > 0) {
            parser.feed(buffer, n, kill_one);
        } else if (n == 0 || errno != EINTR) {
            break;
        }
    }
    parser.finish(kill_one);
    ::close(fd);
    return killed;
}

// The slow way: every /proc/<pid>/stat whose parent is us.
int kill_children_scanned(pid_t self) noexcept {
    const int dir = ::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return 0;
    int killed = 0;
    alignas(8) char entries[8192];
    for (;;) {
        const long n = ::syscall(SYS_getdents64, dir, entries, sizeof entries);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[]
            unsigned short reclen = 0;
            __builtin_memcpy(&reclen, entries + off + 16, sizeof reclen);
            const char* name = entries + off + 19;
            off += reclen;
            long pid = 0;
            bool numeric = *name != '\0';
            for (const char* p = name; *p; ++p) {
                if (*p < '0' || *p > '9') {
                    numeric = false;
                    break;
                }
                pid = pid * 10 + (*p - '0');
            }
            if (!numeric) continue;
            char path[40] = "/proc/";
            int len = 6;
            for (const char* p = name; *p && len < 30; ++p) path[len++] = *p;
            const char tail[] = "/stat";
            for (char c : tail) path[len++] = c;
            const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) continue;
            char stat[512];
            const ssize_t got = ::read(fd, stat, sizeof stat - 1);
            ::close(fd);
            if (got <= 0) continue;
            // "pid (comm) state ppid ...": comm may hold anything, so from the last ')'.
            long close_paren = -1;
            for (long i = 0; i < got; ++i)
                if (stat[i] == ')') close_paren = i;
            if (close_paren < 0 || close_paren + 4 >= got) continue;
            long ppid = 0;
            for (long i = close_paren + 4; i < got && stat[i] >= '0' && stat[i] <= '9'; ++i)
                ppid = ppid * 10 + (stat[i] - '0');
            if (ppid == self && ::kill(static_cast<pid_t>(pid), SIGKILL) == 0) ++killed;
        }
    }
    ::close(dir);
    return killed;
}

// Kills every descendant: the children are killed, their own children are
// reparented to us (we are their subreaper) and killed in the next round, a
// fork racing a round is caught in the next one; done when no child is left.
// As init of the program's pid namespace, kill(-1) reaches every process in
// it but us at once (and the pids /proc shows are not the namespace's).
void kill_all(reap_state& state, bool namespace_init) noexcept {
    const pid_t self = static_cast<pid_t>(::syscall(SYS_getpid));
    for (;;) {
        int killed = 0;
        if (namespace_init) {
            killed = ::kill(-1, SIGKILL) == 0 ? 1 : 0;
        } else {
            killed = kill_children_listed();
            if (killed < 0) killed = kill_children_scanned(self);
        }
        const int reaped = reap_ready(state);
        if (reaped < 0) return;  // no child left
        if (reaped > 0) continue;
        if (killed > 0) {
            int status = 0;
            const pid_t r = ::waitpid(-1, &status, __WALL);
            if (r == state.program) {
                state.status = status;
                state.program_done = true;
            } else if (r < 0 && errno == ECHILD) {
                return;
            }
        } else {
            sleep_ms(1);  // a child the list did not show yet
        }
    }
}

// kernex reads the program's own status here (see child_process); the
// reaper's exit status says the same where it can.
void say_status(const reap_state& state) noexcept {
    char record[5] = {'S'};
    const std::int32_t status = state.status;
    __builtin_memcpy(record + 1, &status, sizeof status);
    [[maybe_unused]] auto n = ::send(lifeline, record, sizeof record, MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Lingering: nothing is left under us (the namespace, if ours, is empty),
// and we hold what is removed if kernex dies. Returns true when kernex died
// (end of file), false when it said 'l'; other bytes ('k', a kill that
// came after the program ended) change nothing.
bool hold_until_told() noexcept {
    for (;;) {
        pollfd p{lifeline, POLLIN, 0};
        if (::poll(&p, 1, -1) < 0) continue;
        char c;
        const ssize_t got = ::read(lifeline, &c, 1);
        if (got > 0) {
            if (c == 'l') return false;
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
            return true;
        }
    }
}

[[noreturn]] void exit_like(const reap_state& state, bool namespace_init, bool status_said) noexcept {
    if (!state.program_done) ::_exit(128 + SIGKILL);
    if (!status_said) say_status(state);
    if (WIFEXITED(state.status)) ::_exit(WEXITSTATUS(state.status));
    // The init of a pid namespace cannot die of a signal it sends itself.
    if (WIFSIGNALED(state.status) && !namespace_init) {
        // Die of the same signal, so kernex sees the program's own status;
        // no core of ours.
        const int sig = WTERMSIG(state.status);
        rlimit none{0, 0};
        ::setrlimit(RLIMIT_CORE, &none);
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        ::sigaction(sig, &dfl, nullptr);
        sigset_t only;
        sigemptyset(&only);
        sigaddset(&only, sig);
        ::sigprocmask(SIG_UNBLOCK, &only, nullptr);
        ::kill(static_cast<pid_t>(::syscall(SYS_getpid)), sig);
        ::_exit(128 + sig);
    }
    ::_exit(1);
}

// Our pid as kernex sees it: in a pid namespace of our own, getpid() is the
// namespace's number, the host's /proc names us by kernex's. 0 if it
// cannot tell.
pid_t pid_seen_by_kernex() noexcept {
    char link[32];
    const ssize_t n = ::readlinkat(host_proc, "self", link, sizeof link);
    pid_t pid = 0;
    for (ssize_t i = 0; i < n; ++i) {
        if (link[i] < '0' || link[i] > '9') return 0;
        pid = pid * 10 + (link[i] - '0');
    }
    return pid;
}

[[noreturn]] void exec_program(const reaper_plan& plan, bool namespace_init) noexcept {
    if (namespace_init) {
        // Unknown (no /proc): no record, and kernex takes the reaper's pid,
        // never a number of the namespace's, which would name another process.
        const pid_t seen = pid_seen_by_kernex();
        if (seen > 0) write_record('P', seen);
    }
    // Default dispositions and an empty mask: what the reaper ignores or
    // blocks is not the program's business.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
    if (::dup2(program_in, 0) < 0 || ::dup2(program_out, 1) < 0 || ::dup2(program_err, 2) < 0) {
        write_record('E', errno);
        ::_exit(127);
    }
    ::close(lifeline);
    ::close(program_in);
    ::close(program_out);
    ::close(program_err);
    ::fcntl(report, F_SETFD, FD_CLOEXEC);  // closed by a successful exec: end of file for kernex
    for (std::size_t i = 0; i < plan.limit_count; ++i) {
        rlimit limit{plan.limits[i].value, plan.limits[i].value};
        if (::setrlimit(plan.limits[i].resource, &limit) != 0) {
            write_record('E', errno);
            ::_exit(127);
        }
    }
    if (plan.cwd && ::chdir(plan.cwd) != 0) {
        write_record('E', errno);
        ::_exit(127);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(plan.file, plan.argv, plan.envp);
    write_record('E', errno);
    ::_exit(127);
}

// The program's process: a clone that shares our memory and suspends us
// until it has exec'd (or died), as posix_spawn does. A fork of the reaper
// (a copy of kernex's address space) would copy all its page tables for a
// process that execs at once. What the clone runs (exec_program) writes
// only its own stack (stack, here) and errno (our thread's: read by us only
// when the clone itself failed); the plan it reads nobody writes. No
// handler of ours can run in it: every signal is blocked and every
// disposition SIG_IGN or SIG_DFL. Its fds, cwd and rlimits are its own
// (no CLONE_FILES, CLONE_FS, CLONE_THREAD).
//
// Under ASan or TSan a plain fork instead: their runtimes track one stack
// per thread, and instrumented code running on this one (a noreturn call's
// __asan_handle_no_return) makes ASan report the stack switch. The fork is
// the raw system call: the reaper may itself be a raw clone of a
// multithreaded kernex, whose copies of glibc's locks fork() would wait on.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
pid_t spawn_program(const reaper_plan& plan, bool namespace_init) noexcept {
    const auto pid = static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
    if (pid == 0) exec_program(plan, namespace_init);
    return pid;
}
#else
struct program_start {
    const reaper_plan* plan;
    bool namespace_init;
};

int program_main(void* arg) {
    const auto* start = static_cast<const program_start*>(arg);
    exec_program(*start->plan, start->namespace_init);
}

pid_t spawn_program(const reaper_plan& plan, bool namespace_init) noexcept {
    alignas(64) char stack[32 * 1024];
    program_start start{&plan, namespace_init};
    return ::clone(program_main, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &start);
}
#endif

}  // namespace

void run_reaper(const reaper_plan& plan) noexcept {
    // Every fd the reaper needs is first copied above all of them, then put
    // at its fixed number, so no dup2 overwrites another that is still needed.
    const int in = ::fcntl(plan.stdin_fd, F_DUPFD, first_free + 8);
    const int out = ::fcntl(plan.stdout_fd, F_DUPFD, first_free + 8);
    const int err = ::fcntl(plan.stderr_fd, F_DUPFD, first_free + 8);
    const int life = ::fcntl(plan.lifeline_fd, F_DUPFD, first_free + 8);
    const int rep = ::fcntl(plan.report_fd, F_DUPFD, first_free + 8);
    if (in < 0 || out < 0 || err < 0 || life < 0 || rep < 0) ::_exit(127);
    ::dup2(rep, report);
    ::dup2(life, lifeline);
    ::dup2(in, program_in);
    ::dup2(out, program_out);
    ::dup2(err, program_err);
    // kernex's own stdio and every other fd of it (other reapers' lifelines
    // above all, whose end of file must not wait for us) are not ours.
    ::dup2(program_in, 0);
    ::dup2(program_in, 1);
    ::dup2(program_in, 2);
    close_from(host_proc, plan.max_fd);

    // Made by child_process as pid 1 of a pid namespace of the program's own,
    // or a plain subreaper.
    const bool namespace_init = ::syscall(SYS_getpid) == 1;
    if (namespace_init) {
        // The program's /proc shows its namespace (so ps, pgrep and kill
        // agree on pids): a proc of its own, mounted in the mount namespace
        // the clone made, once that is private (else the mount would reach
        // the host's). The host's stays open here for pid_seen_by_kernex().
        const int fd = ::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0 && fd != host_proc) {
            ::dup3(fd, host_proc, O_CLOEXEC);
            ::close(fd);
        }
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0)
            ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    }
    ::setsid();
    ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    // Signals sent to the group (SIGINT for an interrupt, SIGTERM to stop)
    // are for the program; the reaper ignores them and dies only of SIGKILL.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGCHLD) ::sigaction(sig, &ignore, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGCHLD, &dfl, nullptr);  // not SIG_IGN: that would reap behind our back

    reap_state state;
    state.program = spawn_program(plan, namespace_init);
    if (state.program < 0) {
        write_record('E', errno);
        ::_exit(127);
    }
    if (!namespace_init) write_record('P', state.program);  // else the program says its pid as kernex sees it
    ::close(report);
    ::close(program_out);
    ::close(program_err);
    ::close(program_in);
    [[maybe_unused]] int rc = ::chdir("/");

    // Until the program ends, kernex asks (a byte) or kernex dies (end of
    // file). SIGCHLD (blocked, as every signal since before fork) arrives on
    // a signalfd; orphans that end meanwhile are reaped as they go.
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    const int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    bool orphaned = false;
    bool leave = false;
    for (;;) {
        reap_ready(state);
        if (state.program_done) break;
        pollfd p[2] = {{lifeline, POLLIN, 0}, {sfd, POLLIN, 0}};
        const int n = ::poll(p, 2, sfd < 0 ? 10 : -1);
        if (n < 0) continue;
        if (p[0].revents) {
            char c;
            const ssize_t got = ::read(lifeline, &c, 1);
            if (got > 0) {  // kernex asks: kill now ('k'), and then go too ('l')
                leave = c == 'l';
                break;
            }
            if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                orphaned = true;
                break;
            }
        }
        if (sfd >= 0 && p[1].revents) {
            signalfd_siginfo info;
            while (::read(sfd, &info, sizeof info) > 0) {}
        }
    }
    kill_all(state, namespace_init);
    bool status_said = false;
    if (plan.linger && !orphaned && !leave && state.program_done) {
        if (sfd >= 0) ::close(sfd);
        say_status(state);
        status_said = true;
        orphaned = hold_until_told();
    }
    if (orphaned && plan.remove_if_orphaned)
        for (const char* const* path = plan.remove_if_orphaned; *path; ++path)
            if (::unlink(*path) != 0 && errno == EISDIR) ::rmdir(*path);
    if (orphaned && plan.remove_tree_if_orphaned) remove_tree(plan.remove_tree_if_orphaned);
    exit_like(state, namespace_init, status_said);
}

}  // namespace kernex::detail
