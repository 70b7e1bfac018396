// kernex-runner: the resident runner. A small static program, started once
// per executor session inside the sandbox (bwrap --as-pid-1 ... runner) or
// as a Docker container's pid 1, that runs blocks one at a time as kernex
// asks over its stdin and answers over its stdout (the format is in
// runner_protocol.hpp). Each block runs in a session and process group of
// its own, with the argv, environment, cwd and rlimits it is given, stdin
// /dev/null, its output on pipes the runner reads and frames; the runner
// enforces the block's timeout and, after every block, kills everything the
// block started before it answers: as pid 1 of a pid namespace with
// kill(-1, SIGKILL) (every process of the namespace but itself), otherwise
// as a child subreaper killing its children until none is left.
//
// It links nothing but libc (static), so it runs in any image on the same
// architecture. It allocates only with new/delete of plain buffers.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "runner/runner_protocol.hpp"

extern char** environ;

namespace proto = kernex::runner_protocol;

namespace {

int ctl_in = -1;
int ctl_out = -1;
int child_signals = -1;  // signalfd for SIGCHLD
bool pid_one = false;
pid_t current_block = -1;

bool kill_everything(pid_t block, int& status, bool& block_done);

std::int64_t now_ms() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// kernex went away or broke the protocol: nothing the runner started outlives it.
[[noreturn]] void die() {
    int status = 0;
    bool done = false;
    kill_everything(current_block, status, done);
    ::_exit(1);
}

bool write_all(int fd, const void* data, std::size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                pollfd pf{fd, POLLOUT, 0};
                ::poll(&pf, 1, -1);
                continue;
            }
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

// A frame to kernex; a kernex that went away ends the runner.
void send_frame(char type, const void* payload, std::uint32_t size) {
    unsigned char header[proto::header_size];
    header[0] = static_cast<unsigned char>(type);
    proto::put_u32(header + 1, size);
    if (!write_all(ctl_out, header, sizeof header) || !write_all(ctl_out, payload, size)) die();
}

void send_exit(proto::exit_how how, std::int32_t value, bool cleaned, const char* message) {
    unsigned char buf[512];
    buf[0] = static_cast<unsigned char>(how);
    proto::put_u32(buf + 1, static_cast<std::uint32_t>(value));
    buf[5] = cleaned ? 1 : 0;
    std::size_t n = 6;
    for (const char* m = message; m && *m && n < sizeof buf; ++m) buf[n++] = static_cast<unsigned char>(*m);
    send_frame(proto::exit, buf, static_cast<std::uint32_t>(n));
}

bool read_exact(int fd, void* data, std::size_t n) {
    char* p = static_cast<char*>(data);
    while (n > 0) {
        const ssize_t r = ::read(fd, p, n);
        if (r == 0) return false;
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                pollfd pf{fd, POLLIN, 0};
                ::poll(&pf, 1, -1);
                continue;
            }
            return false;
        }
        p += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

struct frame {
    char type = 0;
    std::uint32_t size = 0;
    unsigned char* payload = nullptr;  // new[]'d
};

// The next request from kernex; false at end of file or on a bad frame (both end the runner).
bool read_frame(frame& f) {
    unsigned char header[proto::header_size];
    if (!read_exact(ctl_in, header, sizeof header)) return false;
    f.type = static_cast<char>(header[0]);
    f.size = proto::get_u32(header + 1);
    if (f.size > proto::max_payload) return false;
    delete[] f.payload;
    f.payload = new unsigned char[f.size + 1];
    return read_exact(ctl_in, f.payload, f.size);
}

// Reaps every child that has ended; records the block's status. Returns -1 once there is none at all.
int reap_ready(pid_t block, int& status, bool& block_done) {
    int reaped = 0;
    for (;;) {
        int s = 0;
        const pid_t r = ::waitpid(-1, &s, WNOHANG | __WALL);
        if (r > 0) {
            ++reaped;
            if (r == block) {
                status = s;
                block_done = true;
            }
        } else if (r == 0) {
            return reaped;
        } else if (errno != EINTR) {
            return reaped > 0 ? reaped : -1;
        }
    }
}

// SIGKILL to every child the kernel lists for us (we are single-threaded).
int kill_children() {
    const int fd = ::open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[4096];
    int killed = 0;
    long pid = -1;
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; ++i) {
            if (buf[i] >= '0' && buf[i] <= '9') {
                pid = (pid < 0 ? 0 : pid * 10) + (buf[i] - '0');
            } else {
                if (pid > 0 && ::kill(static_cast<pid_t>(pid), SIGKILL) == 0) ++killed;
                pid = -1;
            }
        }
    }
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), SIGKILL) == 0) ++killed;
    ::close(fd);
    return killed;
}

// Kills everything the block started and reaps it. Returns whether nothing
// is left (false only if something would not die within 10 s: a process in
// uninterruptible sleep).
bool kill_everything(pid_t block, int& status, bool& block_done) {
    const std::int64_t give_up = now_ms() + 10'000;
    for (;;) {
        // As pid 1 of the namespace: every process in it but us, atomically
        // against fork (a forking process with a pending SIGKILL fails to fork).
        if (pid_one) {
            ::kill(-1, SIGKILL);
        } else {
            if (block > 0 && !block_done) ::kill(-block, SIGKILL);
            kill_children();
        }
        if (reap_ready(block, status, block_done) < 0) return true;
        if (now_ms() > give_up) return false;
        timespec ts{0, 1'000'000};
        ::nanosleep(&ts, nullptr);
    }
}

// Empties a directory (the sandbox's private /tmp) without following links
// and without entering another file system: the work dir and other host
// dirs are mounted beneath it.
void empty_dir(int dir_fd, dev_t dev, int depth) {
    DIR* d = ::fdopendir(dir_fd);
    if (!d) {
        ::close(dir_fd);
        return;
    }
    for (int pass = 0; pass < 8; ++pass) {
        bool removed = false;
        ::rewinddir(d);
        while (dirent* e = ::readdir(d)) {
            const char* name = e->d_name;
            if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
            if (::unlinkat(dir_fd, name, 0) == 0) {
                removed = true;
                continue;
            }
            if (errno != EISDIR || depth > 64) continue;
            const int sub = ::openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) continue;
            struct stat st;
            if (::fstat(sub, &st) != 0 || st.st_dev != dev) {
                ::close(sub);
                continue;
            }
            ::fchmod(sub, 0700);
            empty_dir(sub, dev, depth + 1);
            if (::unlinkat(dir_fd, name, AT_REMOVEDIR) == 0) removed = true;
        }
        if (!removed) break;
    }
    ::closedir(d);
}

struct request {
    std::uint32_t timeout_ms = 0;
    std::uint32_t flags = 0;
    std::uint32_t limit_count = 0;
    int limit_resource[16] = {};
    std::uint64_t limit_value[16] = {};
    char* cwd = nullptr;
    char* scrub = nullptr;
    char** argv = nullptr;  // null-terminated
    char** envp = nullptr;
};

char* copy_string(proto::reader& r) {
    std::uint32_t n = 0;
    const char* s = r.string(n);
    if (!s) return nullptr;
    char* c = new char[n + 1];
    std::memcpy(c, s, n);
    c[n] = '\0';
    return c;
}

char** copy_strings(proto::reader& r) {
    const std::uint32_t count = r.u32();
    if (!r.ok() || count > r.left() / 4) return nullptr;  // each string takes at least its length
    char** list = new char*[count + 1]();
    for (std::uint32_t i = 0; i < count; ++i) {
        list[i] = copy_string(r);
        if (!list[i]) return nullptr;  // the runner ends on a bad request: nothing to free
    }
    return list;
}

bool same_name(const char* a, const char* b) {
    while (*a && *a != '=' && *a == *b) ++a, ++b;
    return (*a == '=' || *a == '\0') && (*b == '=' || *b == '\0');
}

// The runner's own environment (the container's, as Docker gave it to its
// first process) under the request's: each name the request does not set.
void inherit_environment(request& q) {
    std::size_t own = 0, given = 0;
    while (environ && environ[own]) ++own;
    while (q.envp[given]) ++given;
    char** merged = new char*[given + own + 1]();
    std::size_t n = 0;
    for (std::size_t i = 0; i < given; ++i) merged[n++] = q.envp[i];
    for (std::size_t i = 0; i < own; ++i) {
        bool set = false;
        for (std::size_t j = 0; j < given && !set; ++j) set = same_name(environ[i], q.envp[j]);
        if (set || !std::strchr(environ[i], '=')) continue;
        const std::size_t len = std::strlen(environ[i]);
        merged[n] = new char[len + 1];
        std::memcpy(merged[n++], environ[i], len + 1);
    }
    delete[] q.envp;
    q.envp = merged;
}

bool parse_request(const frame& f, request& q) {
    proto::reader r(f.payload, f.size);
    q.timeout_ms = r.u32();
    q.flags = r.u32();
    q.limit_count = r.u32();
    if (!r.ok() || q.limit_count > 16) return false;
    for (std::uint32_t i = 0; i < q.limit_count; ++i) {
        q.limit_resource[i] = static_cast<int>(r.u32());
        q.limit_value[i] = r.u64();
    }
    q.cwd = copy_string(r);
    q.scrub = copy_string(r);
    q.argv = copy_strings(r);
    if (!q.argv || !q.argv[0]) return false;
    q.envp = copy_strings(r);
    if (!(r.ok() && r.at_end() && q.cwd && q.scrub && q.envp)) return false;
    if (q.flags & proto::flag_inherit_env) inherit_environment(q);
    return true;
}

// The file exec runs for argv[0]: itself when it holds a '/', else the first
// executable on the block's PATH. Writes into out (size n).
bool resolve(const request& q, char* out, std::size_t n) {
    const char* name = q.argv[0];
    if (std::strchr(name, '/')) {
        if (std::strlen(name) >= n) return false;
        std::strcpy(out, name);
        return true;
    }
    const char* path = "/usr/local/bin:/usr/bin:/bin";
    for (char** e = q.envp; *e; ++e)
        if (std::strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
    const std::size_t name_len = std::strlen(name);
    while (*path) {
        const char* end = std::strchr(path, ':');
        const std::size_t len = end ? static_cast<std::size_t>(end - path) : std::strlen(path);
        if (len > 0 && len + 1 + name_len < n) {
            std::memcpy(out, path, len);
            out[len] = '/';
            std::memcpy(out + len + 1, name, name_len + 1);
            struct stat st;
            if (::stat(out, &st) == 0 && S_ISREG(st.st_mode) && ::access(out, X_OK) == 0) return true;
        }
        path += len;
        if (*path == ':') ++path;
    }
    return false;
}

struct start_failure {
    std::int32_t error;
    char step[28];
};

[[noreturn]] void exec_block(const request& q, const char* file, int out_w, int err_w, int report) {
    ::setsid();
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    auto fail = [&](const char* step) {
        start_failure f{errno, {}};
        std::strncpy(f.step, step, sizeof f.step - 1);
        [[maybe_unused]] auto n = ::write(report, &f, sizeof f);
        ::_exit(127);
    };
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) fail("open /dev/null");
    // Every fd moved above 2 first, so no dup2 overwrites one still needed.
    const int o = ::fcntl(out_w, F_DUPFD_CLOEXEC, 10);
    const int e = ::fcntl(err_w, F_DUPFD_CLOEXEC, 10);
    const int rep = ::fcntl(report, F_DUPFD_CLOEXEC, 10);
    if (o < 0 || e < 0 || rep < 0) fail("dup");
    report = rep;
    if (::dup2(null_fd, 0) < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0) fail("dup2");
    // Nothing of the runner's reaches the block: every fd above stdio is
    // closed now (the report pipe is close-on-exec and kept until exec).
    if (::dup2(report, 3) < 0) fail("dup2");
    ::fcntl(3, F_SETFD, FD_CLOEXEC);
    report = 3;
#ifdef SYS_close_range
    if (::syscall(SYS_close_range, 4, ~0U, 0) != 0)
#endif
        for (int fd = 4; fd < 65536; ++fd) ::close(fd);
    for (std::uint32_t i = 0; i < q.limit_count; ++i) {
        rlimit l{static_cast<rlim_t>(q.limit_value[i]), static_cast<rlim_t>(q.limit_value[i])};
        if (::setrlimit(q.limit_resource[i], &l) != 0) fail("setrlimit");
    }
    if (*q.cwd && ::chdir(q.cwd) != 0) fail("chdir");
    ::execve(file, q.argv, q.envp);
    fail("exec");
    ::_exit(127);
}

// Forwards what a pipe holds; false at end of file.
bool forward(int fd, char type, unsigned char* buf) {
    for (int round = 0; round < 16; ++round) {
        const ssize_t n = ::read(fd, buf, proto::chunk_size);
        if (n > 0) {
            send_frame(type, buf, static_cast<std::uint32_t>(n));
            continue;
        }
        if (n == 0) return false;
        if (errno == EINTR) continue;
        return errno == EAGAIN;
    }
    return true;
}

void run_block(const frame& f, unsigned char* buf) {
    request q;
    if (!parse_request(f, q)) die();  // kernex sent garbage: not ours to guess
    char file[4096];
    if (!resolve(q, file, sizeof file)) {
        errno = ENOENT;
        send_exit(proto::exit_how::not_started, ENOENT, true, "exec: not found on PATH");
        return;
    }
    const bool merge = q.flags & proto::flag_merge_stderr;
    int out[2], err[2] = {-1, -1}, report[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || (!merge && ::pipe2(err, O_CLOEXEC) != 0) || ::pipe2(report, O_CLOEXEC) != 0) {
        send_exit(proto::exit_how::not_started, errno, true, "pipe");
        return;
    }
    const pid_t block = ::fork();
    current_block = block;
    if (block == 0) exec_block(q, file, out[1], merge ? out[1] : err[1], report[1]);
    const int fork_errno = errno;
    ::close(out[1]);
    if (!merge) ::close(err[1]);
    ::close(report[1]);
    if (block < 0) {
        ::close(out[0]);
        if (!merge) ::close(err[0]);
        ::close(report[0]);
        send_exit(proto::exit_how::not_started, fork_errno, true, "fork");
        return;
    }
    // End of file: the exec happened. A record: why it did not.
    start_failure failure{};
    std::size_t got = 0;
    while (got < sizeof failure) {
        const ssize_t n = ::read(report[0], reinterpret_cast<char*>(&failure) + got, sizeof failure - got);
        if (n > 0) got += static_cast<std::size_t>(n);
        else if (n == 0 || errno != EINTR) break;
    }
    ::close(report[0]);
    int status = 0;
    bool done = false;
    if (got == sizeof failure) {
        const bool cleaned = kill_everything(block, status, done);
        ::close(out[0]);
        if (!merge) ::close(err[0]);
        failure.step[sizeof failure.step - 1] = '\0';
        send_exit(proto::exit_how::not_started, failure.error, cleaned, failure.step);
        return;
    }
    ::fcntl(out[0], F_SETFL, O_NONBLOCK);
    if (!merge) ::fcntl(err[0], F_SETFL, O_NONBLOCK);

    const std::int64_t deadline = q.timeout_ms ? now_ms() + q.timeout_ms : -1;
    bool out_open = true, err_open = !merge;
    proto::exit_how how = proto::exit_how::exited;
    for (;;) {
        reap_ready(block, status, done);
        if (done) break;
        int wait = -1;
        if (deadline >= 0) {
            const std::int64_t left = deadline - now_ms();
            if (left <= 0) {
                how = proto::exit_how::timed_out;
                break;
            }
            wait = static_cast<int>(left > 1'000'000 ? 1'000'000 : left);
        }
        pollfd p[4] = {{ctl_in, POLLIN, 0},
                       {out_open ? out[0] : -1, POLLIN, 0},
                       {err_open ? err[0] : -1, POLLIN, 0},
                       {child_signals, POLLIN, 0}};
        if (::poll(p, 4, wait) < 0) continue;
        if (p[0].revents) {
            frame c;
            if (!read_frame(c)) die();  // kernex went away: the kernel or die() ends the block
            const bool cancel = c.type == proto::cancel;
            delete[] c.payload;
            if (cancel) {
                how = proto::exit_how::cancelled;
                break;
            }
            if (c.type != proto::cancel) die();  // only a cancel may come during a block
        }
        if (p[1].revents) out_open = forward(out[0], proto::out, buf);
        if (p[2].revents) err_open = forward(err[0], proto::err, buf);
        if (p[3].revents) {
            signalfd_siginfo info;
            while (::read(child_signals, &info, sizeof info) > 0) {}
        }
    }
    const bool cleaned = kill_everything(block, status, done);
    // Every writer is dead: what the pipes still hold comes, then end of file.
    while (out_open) out_open = forward(out[0], proto::out, buf);
    while (err_open) err_open = forward(err[0], proto::err, buf);
    ::close(out[0]);
    if (!merge) ::close(err[0]);
    if (*q.scrub) {
        const int d = ::open(q.scrub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (d >= 0 && ::fstat(d, &st) == 0)
            empty_dir(d, st.st_dev, 0);
        else if (d >= 0)
            ::close(d);
    }
    if (how == proto::exit_how::exited && done && WIFSIGNALED(status))
        send_exit(proto::exit_how::signaled, WTERMSIG(status), cleaned, "");
    else if (how == proto::exit_how::exited && done)
        send_exit(proto::exit_how::exited, WEXITSTATUS(status), cleaned, "");
    else
        send_exit(how, 0, cleaned, "");
    current_block = -1;
    for (char** a = q.argv; a && *a; ++a) delete[] *a;
    for (char** e = q.envp; e && *e; ++e) delete[] *e;
    delete[] q.argv;
    delete[] q.envp;
    delete[] q.cwd;
    delete[] q.scrub;
}

// ---- files "copy": a block's code file in, what the blocks wrote out.

void send_done(bool ok, std::int32_t error, std::uint64_t count, const char* message) {
    unsigned char buf[512];
    buf[0] = ok ? 1 : 0;
    proto::put_u32(buf + 1, static_cast<std::uint32_t>(error));
    proto::put_u64(buf + 5, count);
    std::size_t n = 13;
    for (const char* m = message; m && *m && n < sizeof buf; ++m) buf[n++] = static_cast<unsigned char>(*m);
    send_frame(proto::done, buf, static_cast<std::uint32_t>(n));
}

// message = "what: strerror(err)", into out (size n).
void describe(char* out, std::size_t n, const char* what, const char* name, int err) {
    std::size_t at = 0;
    auto add = [&](const char* s) {
        while (s && *s && at + 1 < n) out[at++] = *s++;
    };
    add(what);
    add(name);
    if (err) {
        add(": ");
        add(std::strerror(err));
    }
    out[at] = '\0';
}

// A new file at name beneath dir, as confine::create_beneath makes one on
// the host (its comments say why): every dir on the way opened with
// O_NOFOLLOW, a symlink there refused, a missing one made 0700; what stands
// at the name unlinked, never opened; the file made O_CREAT | O_EXCL.
void write_file(const frame& f) {
    proto::reader r(f.payload, f.size);
    const mode_t mode = static_cast<mode_t>(r.u32()) & 0777;
    char* dir = copy_string(r);
    char* name = copy_string(r);
    std::size_t size = 0;
    const char* bytes = r.rest(size);
    if (!r.ok() || !dir || !name) die();  // kernex sent garbage
    char why[400];
    int dir_fd = ::open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    bool failed = dir_fd < 0;
    int err = errno;
    if (failed) describe(why, sizeof why, "cannot open ", dir, err);
    char* part = name;
    if (!failed && (*name == '\0' || *name == '/')) {
        failed = true;
        err = EINVAL;
        describe(why, sizeof why, "not a name beneath the dir: ", name, 0);
    }
    // Each dir on the way.
    while (!failed) {
        char* slash = std::strchr(part, '/');
        if (!slash) break;
        *slash = '\0';
        if (std::strcmp(part, "..") == 0) {
            failed = true;
            err = EINVAL;
            describe(why, sizeof why, "not a name beneath the dir: ..", "", 0);
            break;
        }
        if (*part && std::strcmp(part, ".") != 0) {
            int next = -1;
            for (int attempt = 0; attempt < 3 && next < 0; ++attempt) {
                next = ::openat(dir_fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0 && errno == ENOENT) ::mkdirat(dir_fd, part, 0700);
                else if (next < 0) break;
            }
            if (next < 0) {
                err = errno;
                failed = true;
                describe(why, sizeof why,
                         err == ELOOP || err == ENOTDIR ? "a symlink or not a directory on the way: " : "cannot open the dir ",
                         part, err == ELOOP || err == ENOTDIR ? 0 : err);
                break;
            }
            ::close(dir_fd);
            dir_fd = next;
        }
        part = slash + 1;
    }
    if (!failed && (*part == '\0' || std::strcmp(part, ".") == 0 || std::strcmp(part, "..") == 0)) {
        failed = true;
        err = EINVAL;
        describe(why, sizeof why, "not a file name: ", name, 0);
    }
    int fd = -1;
    for (int attempt = 0; !failed && fd < 0 && attempt < 1000; ++attempt) {
        fd = ::openat(dir_fd, part, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd >= 0) break;
        err = errno;
        struct stat st;
        if (err != EEXIST || (::fstatat(dir_fd, part, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))) {
            failed = true;
            describe(why, sizeof why, err == EEXIST ? "a directory stands at " : "cannot create ", part,
                     err == EEXIST ? 0 : err);
        } else if (::unlinkat(dir_fd, part, 0) != 0 && errno != ENOENT) {
            err = errno;
            failed = true;
            describe(why, sizeof why, "cannot replace ", part, err);
        }
    }
    if (!failed && fd < 0) {
        failed = true;
        describe(why, sizeof why, "something keeps putting back ", part, 0);
    }
    if (!failed && !write_all(fd, bytes, size)) {
        err = errno;
        failed = true;
        describe(why, sizeof why, "cannot write ", part, err);
    }
    if (fd >= 0) ::close(fd);
    if (dir_fd >= 0) ::close(dir_fd);
    delete[] dir;
    delete[] name;
    if (failed) send_done(false, err, 0, why);
    else send_done(true, 0, size, "");
}

// The tar a 'P' asks for, written into 'T' frames as it is made.
struct tar_out {
    unsigned char* buf = nullptr;  // chunk_size bytes
    std::size_t used = 0;
    std::uint64_t max_file_bytes = 0;
    std::uint64_t taken = 0;     // file bytes sent
    std::uint64_t left_out = 0;  // file bytes that did not fit
    dev_t dev = 0;
    char path[4096];             // the entry's name, top/...
    std::size_t path_len = 0;

    void flush() {
        if (used) send_frame(proto::tar, buf, static_cast<std::uint32_t>(used));
        used = 0;
    }
    void add(const void* data, std::size_t n) {
        const auto* p = static_cast<const unsigned char*>(data);
        while (n > 0) {
            std::size_t room = proto::chunk_size - used;
            if (room > n) room = n;
            std::memcpy(buf + used, p, room);
            used += room;
            p += room;
            n -= room;
            if (used == proto::chunk_size) flush();
        }
    }
    void zeros(std::size_t n) {
        static const unsigned char none[512] = {};
        while (n > 0) {
            const std::size_t k = n < sizeof none ? n : sizeof none;
            add(none, k);
            n -= k;
        }
    }
    static void octal(char* field, std::size_t width, std::uint64_t v) {
        std::memset(field, '0', width - 1);
        field[width - 1] = '\0';
        for (std::size_t i = width - 1; i-- > 0 && v > 0; v >>= 3) field[i] = static_cast<char>('0' + (v & 7));
    }
    void raw_header(const char* name, std::size_t name_len, char type, mode_t mode, std::uint64_t size,
                    const char* link) {
        char h[512] = {};
        std::memcpy(h, name, name_len > 100 ? 100 : name_len);
        octal(h + 100, 8, mode & 07777);
        octal(h + 108, 8, 0);
        octal(h + 116, 8, 0);
        octal(h + 124, 12, size);
        octal(h + 136, 12, 0);
        h[156] = type;
        if (link) std::strncpy(h + 157, link, 100);
        std::memcpy(h + 257, "ustar", 6);
        std::memcpy(h + 263, "00", 2);
        std::memset(h + 148, ' ', 8);
        unsigned sum = 0;
        for (unsigned char c : h) sum += c;
        octal(h + 148, 7, sum);
        h[155] = ' ';
        add(h, sizeof h);
    }
    // A header for path (a PAX record before it when it is over 100 bytes).
    void header(char type, mode_t mode, std::uint64_t size, const char* link = nullptr) {
        if (path_len > 100) {
            // "LEN path=...\n", LEN counting itself.
            char record[4200];
            const std::size_t body = 7 + path_len;  // " path=" + name + "\n"
            std::size_t len = body + 1;
            while (true) {
                std::size_t digits = 0;
                for (std::size_t v = len; v; v /= 10) ++digits;
                if (digits + body == len) break;
                len = digits + body;
            }
            std::size_t at = 0;
            char num[24];
            std::size_t nd = 0;
            for (std::size_t v = len; v; v /= 10) num[nd++] = static_cast<char>('0' + v % 10);
            while (nd) record[at++] = num[--nd];
            std::memcpy(record + at, " path=", 6);
            at += 6;
            std::memcpy(record + at, path, path_len);
            at += path_len;
            record[at++] = '\n';
            raw_header("PaxHeaders/entry", 16, 'x', 0644, at, nullptr);
            add(record, at);
            zeros((512 - at % 512) % 512);
        }
        raw_header(path, path_len, type, mode, size, link);
    }
    bool push(const char* name) {
        const std::size_t n = std::strlen(name);
        if (path_len + 1 + n >= sizeof path) return false;
        path[path_len++] = '/';
        std::memcpy(path + path_len, name, n + 1);
        path_len += n;
        return true;
    }
};

// Whether a regular file's bytes go in whole; its header and bytes when they do.
void pack_file(tar_out& t, int dir_fd, const char* name, const struct stat& seen) {
    const std::uint64_t size = static_cast<std::uint64_t>(seen.st_size);
    if (t.taken + size > t.max_file_bytes) {
        t.left_out += size;
        return;
    }
    // Nothing runs between blocks (the runner killed it all): what was seen is what is opened.
    const int fd = ::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_ino != seen.st_ino) {
        if (fd >= 0) ::close(fd);
        return;
    }
    t.taken += size;
    t.header('0', st.st_mode, size);
    std::uint64_t done = 0;
    while (done < size) {
        if (t.used == proto::chunk_size) t.flush();
        std::size_t want = proto::chunk_size - t.used;
        if (want > size - done) want = static_cast<std::size_t>(size - done);
        const ssize_t n = ::read(fd, t.buf + t.used, want);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // shorter than it was: the rest as zeros
        t.used += static_cast<std::size_t>(n);
        done += static_cast<std::uint64_t>(n);
    }
    ::close(fd);
    t.zeros(static_cast<std::size_t>(size - done));
    t.zeros(static_cast<std::size_t>((512 - size % 512) % 512));
}

void pack_dir(tar_out& t, int dir_fd, int depth) {
    DIR* d = ::fdopendir(dir_fd);
    if (!d) {
        ::close(dir_fd);
        return;
    }
    while (dirent* e = ::readdir(d)) {
        const char* name = e->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
        struct stat st;
        if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        const std::size_t at = t.path_len;
        if (!t.push(name)) continue;
        if (S_ISDIR(st.st_mode)) {
            // Another file system mounted beneath is not the work dir's.
            if (st.st_dev == t.dev && depth < 256) {
                t.header('5', st.st_mode, 0);
                const int sub = ::openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0) pack_dir(t, sub, depth + 1);
            }
        } else if (S_ISREG(st.st_mode)) {
            pack_file(t, dir_fd, name, st);
        } else if (S_ISLNK(st.st_mode)) {
            char link[101] = {};
            [[maybe_unused]] const ssize_t n = ::readlinkat(dir_fd, name, link, sizeof link - 1);
            t.header('2', 0777, 0, link);
        } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
            t.header(S_ISFIFO(st.st_mode) ? '6' : S_ISCHR(st.st_mode) ? '3' : '4', st.st_mode, 0);
        }
        t.path_len = at;
        t.path[at] = '\0';
    }
    ::closedir(d);
}

void pack(const frame& f, unsigned char* buf) {
    proto::reader r(f.payload, f.size);
    const std::uint64_t max_file_bytes = r.u64();
    char* dir = copy_string(r);
    char* top = copy_string(r);
    if (!r.ok() || !r.at_end() || !dir || !top) die();  // kernex sent garbage
    tar_out t;
    t.buf = buf;
    t.max_file_bytes = max_file_bytes;
    const int fd = ::open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || ::fstat(fd, &st) != 0) {
        const int err = errno;
        char why[400];
        describe(why, sizeof why, "cannot open ", dir, err);
        if (fd >= 0) ::close(fd);
        send_done(false, err, 0, why);
    } else {
        t.dev = st.st_dev;
        const std::size_t n = std::strlen(top);
        t.path_len = n < sizeof t.path - 1 ? n : sizeof t.path - 1;
        std::memcpy(t.path, top, t.path_len);
        t.path[t.path_len] = '\0';
        t.header('5', st.st_mode, 0);
        pack_dir(t, fd, 0);
        t.zeros(1024);
        t.flush();
        send_done(true, 0, t.left_out, "");
    }
    delete[] dir;
    delete[] top;
}

}  // namespace

int main() {
    pid_one = ::getpid() == 1;
    // Nothing may open /proc/<runner>/fd: not dumpable (the code running as
    // the same user cannot ptrace us nor reach our fds).
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (!pid_one) ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    ctl_in = ::fcntl(0, F_DUPFD_CLOEXEC, 10);
    ctl_out = ::fcntl(1, F_DUPFD_CLOEXEC, 10);
    if (ctl_in < 0 || ctl_out < 0) return 1;
    // Whatever else we were started with (bwrap's own fds) is not ours to keep.
    for (int fd = 3; fd < 1024; ++fd)
        if (fd != ctl_in && fd != ctl_out) ::close(fd);
    const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd >= 0) {
        ::dup2(null_fd, 0);
        ::dup2(null_fd, 1);
    }
    // A write to a kernex that went away fails (and ends us) instead of killing us mid-cleanup.
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    child_signals = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (child_signals < 0) return 1;
    auto* buf = new unsigned char[proto::chunk_size];
    send_frame(proto::hello, proto::hello_text, sizeof proto::hello_text - 1);
    frame f;
    while (read_frame(f)) {
        if (f.type == proto::run)
            run_block(f, buf);
        else if (f.type == proto::write)
            write_file(f);
        else if (f.type == proto::pack)
            pack(f, buf);
        else if (f.type != proto::cancel)
            break;
    }
    int status = 0;
    bool done = false;
    kill_everything(-1, status, done);
    return 0;
}
