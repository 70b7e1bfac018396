// The process module with real children: spawning, output against a deadline
// and a cap, killing the whole group, stop escalation, reaping.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "../helpers/test_support.hpp"
#include "kernex/error.hpp"
#include "kernex/process.hpp"
#include "process/remove_tree.hpp"

using namespace std::chrono_literals;
using kernex::test::process_gone;
using kernex::test::read_file;
using kernex::test::temp_dir;

namespace {

kernex::spawn_options shell(const std::string& script) {
    kernex::spawn_options options;
    options.argv = {"sh", "-c", script};
    return options;
}

kernex::run_result run_shell(const std::string& script, std::chrono::milliseconds timeout = 10s,
                             std::size_t max_output = 1u << 20) {
    kernex::run_options limits;
    limits.timeout = timeout;
    limits.max_output = max_output;
    return kernex::run_process(shell(script), limits);
}

// Reads the child's stdout until it has printed a line (or 5 s pass).
std::string read_line(const kernex::child_process& child) {
    std::string text;
    const auto deadline = kernex::clock::now() + 5s;
    while (text.find('\n') == std::string::npos && kernex::clock::now() < deadline) {
        pollfd p{child.stdout_fd(), POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        char buffer[256];
        const ssize_t n = ::read(child.stdout_fd(), buffer, sizeof buffer);
        if (n <= 0) break;
        text.append(buffer, static_cast<std::size_t>(n));
    }
    return text;
}

bool reaped(int pid) { return ::waitpid(pid, nullptr, WNOHANG) == -1 && errno == ECHILD; }

int pid_in(const std::filesystem::path& file) { return std::stoi(read_file(file)); }

}  // namespace

TEST_CASE("run_process keeps stdout and stderr in the order they came") {
    auto r = run_shell("echo one; echo two >&2; echo three");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "one\ntwo\nthree\n");
    CHECK_FALSE(r.timed_out);
    CHECK_FALSE(r.truncated);
}

TEST_CASE("exit codes and signals as a shell reports them") {
    CHECK(run_shell("exit 3").exit_code == 3);
    auto killed = run_shell("kill -9 $$");
    CHECK(killed.exit_code == 128 + SIGKILL);
    CHECK(kernex::describe_status(0) == "exit code 0");
    CHECK(kernex::describe_status(SIGKILL) == "killed by signal 9 (SIGKILL)");
    CHECK(kernex::exit_code_of(3 << 8) == 3);
    CHECK(kernex::exit_code_of(SIGTERM) == 128 + SIGTERM);
}

TEST_CASE("a program that cannot run is a launch_failed error naming it") {
    temp_dir dir;
    auto expect_failure = [](const std::string& program, const std::string& reason) {
        kernex::spawn_options options;
        options.argv = {program};
        try {
            kernex::child_process child(options);
            FAIL("spawned " << program);
        } catch (const kernex::error& e) {
            CHECK(e.code() == kernex::errc::launch_failed);
            CHECK(std::string(e.what()).find(program) != std::string::npos);
            CHECK(std::string(e.what()).find(reason) != std::string::npos);
        }
    };
    expect_failure("kernex-no-such-program", "not found on PATH");
    expect_failure((dir / "missing").string(), "no such file");
    kernex::test::write_file(dir / "not-executable", "#!/bin/sh\n");
    expect_failure((dir / "not-executable").string(), "permission denied");
}

TEST_CASE("argv[0] is looked up on the child's PATH, and the child runs in cwd") {
    temp_dir dir;
    kernex::test::write_file(dir / "kx-tool", "#!/bin/sh\necho tool in $(pwd)\n", true);
    kernex::spawn_options options;
    options.argv = {"kx-tool"};
    options.env = {{"PATH", dir.path().string() + ":/usr/bin:/bin"}};
    options.cwd = dir.path();
    auto r = kernex::run_process(options, {});
    CHECK(r.exit_code == 0);
    CHECK(r.output == "tool in " + std::filesystem::canonical(dir.path()).string() + "\n");
    CHECK(kernex::find_program("kx-tool", dir.path().string()) == dir / "kx-tool");
    CHECK_FALSE(kernex::find_program("kx-tool", "/usr/bin:/bin"));
    CHECK(kernex::find_program("sh", "") .has_value());
}

TEST_CASE("the environment: inherited or not, with additions") {
    ::setenv("KERNEX_TEST_INHERITED", "yes", 1);
    auto inherited = run_shell("echo ${KERNEX_TEST_INHERITED:-no}");
    CHECK(inherited.output == "yes\n");

    kernex::spawn_options options;
    options.argv = {"/usr/bin/env"};
    options.inherit_environment = false;
    options.env = {{"ONLY", "this"}};
    CHECK(kernex::run_process(options, {}).output == "ONLY=this\n");
    ::unsetenv("KERNEX_TEST_INHERITED");
}

TEST_CASE("the child has stdin from /dev/null, only stdio open, a clean signal state, its own session") {
    CHECK(run_shell("cat; echo done", 5s).output == "done\n");

    const int leaked = ::open("/dev/null", O_RDONLY);  // without O_CLOEXEC on purpose
    REQUIRE(leaked >= 3);
    auto fds = run_shell("test -e /proc/$$/fd/" + std::to_string(leaked) + " && echo open || echo closed");
    ::close(leaked);
    CHECK(fds.output == "closed\n");

    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    ::pthread_sigmask(SIG_BLOCK, &block, &old);
    auto old_pipe = ::signal(SIGPIPE, SIG_IGN);
    // grep reads its own state, as exec'ed straight from the spawned shell:
    // the shell's own mask is no witness (dash blocks signals while it
    // waits for a child, which made this check flaky).
    auto sigs = run_shell("exec grep -E 'SigBlk|SigIgn' /proc/self/status");
    ::signal(SIGPIPE, old_pipe);
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    // glibc's posix_spawn leaves its two internal real-time signals (32, 33)
    // ignored; no standard signal may be blocked or ignored.
    CHECK(sigs.output.starts_with("SigBlk:\t0000000000000000\nSigIgn:\t"));
    const auto ignored = std::stoull(sigs.output.substr(sigs.output.rfind('\t') + 1), nullptr, 16);
    CHECK((ignored & 0x7fffffffull) == 0);  // bit n-1 is signal n

    // The program's parent is its reaper, our child, which leads the
    // program's own session and group.
    kernex::child_process child(shell("sleep 5"));
    auto stat_of = [](int pid, int& ppid, int& pgrp, int& session) {
        const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
        return std::sscanf(stat.c_str() + stat.rfind(')') + 1, " %*c %d %d %d", &ppid, &pgrp, &session) == 3;
    };
    int ppid = 0, pgrp = 0, session = 0;
    REQUIRE(stat_of(child.pid(), ppid, pgrp, session));
    CHECK(pgrp == ppid);
    CHECK(session == ppid);
    int reaper_parent = 0, reaper_group = 0, reaper_session = 0;
    REQUIRE(stat_of(ppid, reaper_parent, reaper_group, reaper_session));
    CHECK(reaper_parent == ::getpid());
    CHECK(reaper_session == ppid);
    CHECK(reaper_session != ::getsid(0));
}

TEST_CASE("a timeout kills the whole group, background children included") {
    temp_dir dir;
    const auto start = kernex::clock::now();
    auto r = run_shell("echo started; sleep 1000 & echo $! > " + (dir / "bg").string() + "; wait", 500ms);
    CHECK(r.timed_out);
    CHECK(r.exit_code == 124);
    CHECK(r.output == "started\n");
    CHECK(kernex::clock::now() - start < 3s);
    CHECK(process_gone(pid_in(dir / "bg")));
}

TEST_CASE("a background child holding the pipe does not keep us waiting after the child exits") {
    const auto start = kernex::clock::now();
    auto r = run_shell("sleep 1000 & echo $!");
    CHECK(r.exit_code == 0);
    CHECK_FALSE(r.timed_out);
    CHECK(kernex::clock::now() - start < 2s);
    CHECK(process_gone(std::stoi(r.output)));
}

TEST_CASE("a job-control child in its own group that holds the pipe is killed") {
    const auto start = kernex::clock::now();
    kernex::spawn_options options;
    options.argv = {"bash", "-c", "set -m; sleep 1000 & echo $!"};
    auto r = kernex::run_process(options, {});
    CHECK(r.exit_code == 0);
    CHECK(kernex::clock::now() - start < 2s);
    CHECK(process_gone(std::stoi(r.output)));
}

TEST_CASE("a daemon in another session holding the pipe is killed at the program's end") {
    const auto start = kernex::clock::now();
    auto r = run_shell("setsid sleep 1000 & echo $!");
    const int daemon = std::stoi(r.output);
    CHECK(r.exit_code == 0);
    CHECK(kernex::clock::now() - start < 2s);
    const bool gone = process_gone(daemon);
    CHECK(gone);
    if (!gone) ::kill(daemon, SIGKILL);
}

// What a block starts and detaches from its output and its session, group
// or parent must still be gone when the block ends normally.
TEST_CASE("nothing the program started outlives it: job control, setsid, double fork, nohup") {
    temp_dir dir;
    const std::string d = dir.path().string();
    const std::vector<std::pair<std::string, std::string>> escapes = {
        {"job control", "set -m; sleep 1000 >/dev/null 2>&1 & echo $! > " + d + "/pid"},
        {"setsid", "setsid sh -c 'echo $$ > " + d + "/pid; exec sleep 1000' >/dev/null 2>&1 < /dev/null &"},
        {"double fork", "( ( sleep 1000 >/dev/null 2>&1 & echo $! > " + d + "/pid ) & ) ; sleep 0.1"},
        {"nohup", "nohup sh -c 'echo $$ > " + d + "/pid; exec sleep 1000' >/dev/null 2>&1 &"},
    };
    for (const auto& [what, script] : escapes) {
        CAPTURE(what);
        std::filesystem::remove(dir / "pid");
        kernex::spawn_options options;
        options.argv = {"bash", "-c", script + "\nfor i in $(seq 100); do test -s " + d + "/pid && break; sleep 0.02; done"};
        auto r = kernex::run_process(options, {});
        CHECK(r.exit_code == 0);
        REQUIRE(std::filesystem::exists(dir / "pid"));
        const int escaped = pid_in(dir / "pid");
        const bool gone = process_gone(escaped);
        CHECK(gone);
        if (!gone) ::kill(escaped, SIGKILL);
    }
}

TEST_CASE("output beyond the cap is drained and counted, and the child finishes") {
    std::string streamed;
    kernex::run_options limits;
    limits.max_output = 1000;
    limits.on_output = [&](std::string_view s) { streamed += s; };
    auto r = kernex::run_process(shell("head -c 10000000 /dev/zero; echo finished >&2"), limits);
    CHECK(r.exit_code == 0);
    CHECK(r.output.size() == 1000);
    CHECK(streamed == r.output);
    CHECK(r.truncated);
    CHECK(r.dropped_bytes == 10000000 - 1000 + std::string("finished\n").size());
}

TEST_CASE("a readable cancel fd stops the child as a timeout would") {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    std::jthread canceller([&] {
        std::this_thread::sleep_for(200ms);
        (void)!::write(fds[1], "x", 1);
    });
    kernex::run_options limits;
    limits.cancel_fd = fds[0];
    const auto start = kernex::clock::now();
    auto r = kernex::run_process(shell("sleep 1000"), limits);
    CHECK(r.interrupted);
    CHECK(r.exit_code == 130);
    CHECK(kernex::clock::now() - start < 3s);
    canceller.join();
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST_CASE("stop escalates to SIGKILL for a child that ignores SIGTERM, and reaps it") {
    kernex::child_process child(shell("trap '' TERM; echo ready; exec sleep 1000"));
    REQUIRE(read_line(child) == "ready\n");
    const int pid = child.pid();
    const auto start = kernex::clock::now();
    child.stop(300ms);
    const auto took = kernex::clock::now() - start;
    CHECK(took >= 300ms);
    CHECK(took < 3s);
    REQUIRE(child.status());
    CHECK(kernex::describe_status(*child.status()) == "killed by signal 9 (SIGKILL)");
    CHECK(child.pid() == -1);
    CHECK(reaped(pid));
    CHECK(process_gone(pid, 0ms));
    child.stop();  // idempotent
}

TEST_CASE("stop ends a well-behaved child with SIGTERM, without waiting out the grace") {
    kernex::child_process child(shell("exec sleep 1000"));
    const int pid = child.pid();
    const auto start = kernex::clock::now();
    child.stop(5s);
    CHECK(kernex::clock::now() - start < 2s);
    REQUIRE(child.status());
    CHECK(kernex::exit_code_of(*child.status()) == 128 + SIGTERM);
    CHECK(reaped(pid));
}

TEST_CASE("the pidfd becomes readable when the child exits; the zombie is kept until stop()") {
    kernex::spawn_options options = shell("exit 7");
    options.stdout_mode = kernex::output_mode::null;
    kernex::child_process child(options);
    REQUIRE(child.pidfd() >= 0);
    pollfd p{child.pidfd(), POLLIN, 0};
    CHECK(::poll(&p, 1, 5000) == 1);
    const auto status = child.wait_until(kernex::clock::now() + 5s);
    REQUIRE(status);
    CHECK(kernex::exit_code_of(*status) == 7);
    CHECK_FALSE(child.running());
    const int pid = child.pid();
    CHECK_FALSE(child.signal_group(SIGTERM));
    child.stop();
    CHECK(reaped(pid));
    CHECK(kernex::exit_code_of(*child.status()) == 7);
}

TEST_CASE("wait_until gives up at its deadline; the destructor leaves nothing behind") {
    int pid = -1;
    {
        kernex::child_process child(shell("exec sleep 1000"));
        pid = child.pid();
        const auto start = kernex::clock::now();
        CHECK_FALSE(child.wait_until(start + 100ms));
        CHECK(kernex::clock::now() - start >= 100ms);
        CHECK(child.running());
        CHECK(child.signal_group(SIGCONT));  // alive: the signal counts
        kernex::child_process moved = std::move(child);
        CHECK(child.pid() == -1);
        CHECK(moved.pid() == pid);
    }
    CHECK(reaped(pid));
    CHECK(process_gone(pid, 0ms));
}

TEST_CASE("output_mode::file appends stdout and stderr to the log file") {
    temp_dir dir;
    kernex::spawn_options options = shell("echo out; echo err >&2");
    options.stdout_mode = kernex::output_mode::file;
    options.stderr_mode = kernex::output_mode::file;
    options.log_file = dir / "log";
    kernex::test::write_file(options.log_file, "before\n");
    kernex::child_process child(options);
    CHECK(child.stdout_fd() == -1);
    REQUIRE(child.wait_until(kernex::clock::now() + 5s));
    CHECK(read_file(options.log_file) == "before\nout\nerr\n");
}

TEST_CASE("separate stdout and stderr pipes") {
    kernex::spawn_options options = shell("echo out; echo err >&2");
    options.merge_stderr = false;
    kernex::child_process child(options);
    REQUIRE(child.stderr_fd() >= 0);
    REQUIRE(child.wait_until(kernex::clock::now() + 5s));
    char buffer[64];
    CHECK(::read(child.stdout_fd(), buffer, sizeof buffer) == 4);
    CHECK(::read(child.stderr_fd(), buffer, sizeof buffer) == 4);
}

TEST_CASE("own_pid_namespace: the reaper is the namespace's init, which the program can neither kill nor outlive") {
    kernex::spawn_options options = shell(
        "echo $$ $PPID; kill -9 $PPID; read -r _ _ _ p _ < /proc/self/stat; echo $p\n"
        "setsid bash -c 'exec -a " +
        std::string("kxmark_ns_") + std::to_string(::getpid()) + " sleep 1000' >/dev/null 2>&1 </dev/null &\n"
        "sleep 0.1; exit 7");
    options.own_pid_namespace = true;
    kernex::child_process child(options);
    std::string output;
    const auto deadline = kernex::clock::now() + 20s;
    while (child.running() && kernex::clock::now() < deadline) std::this_thread::sleep_for(5ms);
    REQUIRE(child.status());
    if (!child.own_pid_namespace()) {
        CHECK(::geteuid() != 0);  // root may always make one
        return;
    }
    CHECK(child.pid() > 1);  // as kernex sees it
    CHECK(kernex::exit_code_of(*child.status()) == 7);  // the reaper survived the kill, the status is the program's
    char buffer[256];
    const ssize_t n = ::read(child.stdout_fd(), buffer, sizeof buffer);
    REQUIRE(n > 0);
    // Inside: the program is pid 2 under init 1, and its /proc is the namespace's.
    CHECK(std::string(buffer, static_cast<std::size_t>(n)) == "2 1\n1\n");
    CHECK(kernex::test::no_process_with("kxmark_ns_" + std::to_string(::getpid())));

    kernex::spawn_options segv = shell("kill -SEGV $$");
    segv.own_pid_namespace = true;
    kernex::child_process crash(segv);
    const auto status = crash.wait_until(kernex::clock::now() + 20s);
    REQUIRE(status);
    CHECK(WIFSIGNALED(*status));
    CHECK(WTERMSIG(*status) == SIGSEGV);
}

namespace {

// A program that leaves a setsid'd process behind and exits 3, in a
// lingering reaper's care of tree (with and without a pid namespace).
kernex::spawn_options lingering_program(const std::filesystem::path& tree, const std::string& mark, bool ns) {
    kernex::spawn_options options =
        shell("setsid sh -c 'exec -a " + mark + " sleep 1000' >/dev/null 2>&1 </dev/null & echo out; exit 3");
    options.own_pid_namespace = ns;
    options.remove_tree_if_orphaned = tree;
    options.linger = true;
    return options;
}

}  // namespace

TEST_CASE("linger: once the program's tree is gone its reaper stays, holding the tree, until stop() (which leaves it)") {
    for (const bool ns : {false, true}) {
        CAPTURE(ns);
        temp_dir dir;
        const auto tree = dir.path() / "work";
        std::filesystem::create_directories(tree / "sub");
        const std::string mark = "kxmark_linger_" + std::to_string(::getpid());
        kernex::child_process holder;
        kernex::run_options limits;
        limits.lingering = &holder;
        const auto r = kernex::run_process(lingering_program(tree, mark, ns), limits);
        CHECK(r.exit_code == 3);
        CHECK(r.output == "out\n");
        REQUIRE(holder.status());
        CHECK(kernex::exit_code_of(*holder.status()) == 3);
        CHECK_FALSE(holder.running());
        CHECK(kernex::test::no_process_with(mark, 0ms));  // gone before the status was said
        // The reaper has not exited: its pidfd is not readable.
        pollfd p{holder.pidfd(), POLLIN, 0};
        REQUIRE(p.fd >= 0);
        CHECK(::poll(&p, 1, 200) == 0);
        holder.stop();
        CHECK(holder.pidfd() == -1);
        CHECK(std::filesystem::is_directory(tree / "sub"));
        CHECK(kernex::exit_code_of(*holder.status()) == 3);
    }
}

TEST_CASE("linger: a kill -9 of kernex after the program ended still removes the tree, and nothing outside") {
    for (const bool ns : {false, true}) {
        CAPTURE(ns);
        temp_dir dir;
        const auto tree = dir.path() / "work";
        const auto outside = dir.path() / "outside";
        std::filesystem::create_directories(tree / "sub");
        std::filesystem::create_directories(outside);
        kernex::test::write_file(outside / "canary", "precious");
        kernex::test::write_file(tree / "sub" / "f", "x");
        std::filesystem::create_directory_symlink(outside, tree / "link");
        const std::string mark = "kxmark_linger9_" + std::to_string(::getpid());
        int ready[2];
        REQUIRE(::pipe(ready) == 0);
        // "kernex": a forked copy of this (single-threaded) test that runs
        // the program, keeps its lingering reaper, says so and waits.
        const pid_t kernex_pid = ::fork();
        REQUIRE(kernex_pid >= 0);
        if (kernex_pid == 0) {
            ::close(ready[0]);
            kernex::child_process holder;
            kernex::run_options limits;
            limits.lingering = &holder;
            const auto r = kernex::run_process(lingering_program(tree, mark, ns), limits);
            const char said = holder.status() && r.exit_code == 3 ? 'y' : 'n';
            [[maybe_unused]] auto n = ::write(ready[1], &said, 1);
            for (;;) ::pause();
        }
        ::close(ready[1]);
        char said = 0;
        pollfd p{ready[0], POLLIN, 0};
        if (::poll(&p, 1, 20000) == 1) [[maybe_unused]] auto n = ::read(ready[0], &said, 1);
        ::close(ready[0]);
        CHECK(said == 'y');
        CHECK(std::filesystem::is_directory(tree / "sub"));  // held, not removed, while "kernex" lives
        ::kill(kernex_pid, SIGKILL);
        ::waitpid(kernex_pid, nullptr, 0);
        CHECK(kernex::test::eventually([&] { return !std::filesystem::exists(tree); }, 5000ms));
        CHECK(read_file(outside / "canary") == "precious");
        CHECK(kernex::test::no_process_with(mark, 0ms));
    }
}

TEST_CASE("remove_tree follows no link and enters no mount: what they show elsewhere is kept") {
    namespace fs = std::filesystem;
    temp_dir outside, parent;
    kernex::test::write_file(outside.path() / "canary", "precious");
    const fs::path tree = parent.path() / "tree";
    fs::create_directories(tree / "a" / "b");
    kernex::test::write_file(tree / "a" / "b" / "f", "x");
    fs::create_directory_symlink(outside.path(), tree / "link");
    fs::create_symlink(outside.path() / "canary", tree / "canary-link");
    // A bind of a dir elsewhere on the same file system (same st_dev: only
    // the mount-root attribute tells it), as root: nosuid_bind's kind of mount.
    const bool mounted = ::geteuid() == 0 && fs::create_directory(tree / "m") &&
                         ::mount(outside.path().c_str(), (tree / "m").c_str(), nullptr, MS_BIND, nullptr) == 0;
    if (mounted) CHECK(kernex::detail::is_mount_root(AT_FDCWD, (tree / "m").c_str()));
    CHECK_FALSE(kernex::detail::is_mount_root(AT_FDCWD, (tree / "a").c_str()));

    kernex::detail::remove_tree(tree.c_str());
    CHECK(read_file(outside.path() / "canary") == "precious");
    if (mounted) {
        // The mount point stays (mounted), and with it the tree's dir.
        CHECK(read_file(tree / "m" / "canary") == "precious");
        std::vector<std::string> left;
        for (const auto& e : fs::directory_iterator(tree)) left.push_back(e.path().filename().string());
        CHECK(left == std::vector<std::string>{"m"});
        ::umount2((tree / "m").c_str(), MNT_DETACH);
        kernex::detail::remove_tree(tree.c_str());
    }
    CHECK_FALSE(fs::exists(tree));
    CHECK(fs::exists(outside.path() / "canary"));
}
