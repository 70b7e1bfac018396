// Attacks on the sandbox's resident runner (src/runner): one bwrap per
// executor session whose pid 1 runs every block. The code plays an attacker
// who knows the runner is there: it prints fake frames, reaches for the
// runner's fds through /proc, leaves processes behind for the next block,
// closes its stdout and keeps running, kills everything it can signal, and
// the test kills the runner itself mid-block. Every check is what the code
// printed, a file, or a /proc walk on the host.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "kernex/executor.hpp"
#include "kernex/local_executor.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using kernex::test::temp_dir;

namespace {

std::string random_marker() {
    std::random_device rd;
    return "kxrun" + std::to_string(rd()) + std::to_string(rd());
}

// Living processes whose command line holds text.
std::vector<int> processes_with(const std::string& text) {
    std::vector<int> found;
    for (const auto& entry : fs::directory_iterator("/proc")) {
        const auto name = entry.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream f(entry.path() / "cmdline", std::ios::binary);
        const std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        const auto s = kernex::test::stat_of(std::stoi(name));
        if (cmdline.find(text) != std::string::npos && s && s->state != 'Z') found.push_back(std::stoi(name));
    }
    return found;
}

kernex::local_executor sandboxed(const fs::path& work, std::chrono::milliseconds block_timeout = 60s) {
    kernex::local_executor_options options;
    options.sandbox.emplace();
    options.work_dir = work;
    options.block_timeout = block_timeout;
    return kernex::local_executor(options);
}

kernex::code_result bash(kernex::local_executor& ex, const std::string& code) {
    return ex.execute({{"bash", code}});
}

}  // namespace

TEST_CASE("runner: fake frames printed by a block are its output, not the runner's answer") {
    temp_dir work;
    auto ex = sandboxed(work.path());
    // An exit frame saying "exited 0, cleaned", a hello, a stdout frame
    // claiming a huge size: on stdout and stderr, then the real exit code 7.
    const std::string frames = R"(printf 'X\x06\x00\x00\x00\x00\x00\x00\x00\x00\x01H\x0f\x00\x00\x00kernex-runner/1O\xff\xff\xff\x7f')";
    auto r = bash(ex, frames + "\n" + frames + " >&2\necho after\nexit 7\n");
    CHECK(r.exit_code == 7);
    CHECK(r.output.find("kernex-runner/1") != std::string::npos);
    CHECK(r.output.find("after") != std::string::npos);
    CHECK(r.notes.empty());  // the runner ran it
    // The session is intact: the next block runs in the same runner.
    r = bash(ex, "echo next\n");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "next\n");
}

TEST_CASE("runner: a block cannot reach the runner's control fds through /proc") {
    temp_dir work;
    auto ex = sandboxed(work.path());
    // The runner is pid 1 of the sandbox's pid namespace; try every fd of
    // every process that is not ourselves, for reading and for writing a
    // run request of our own.
    const std::string code = R"(
me=$$
reached=0
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = "$me" ] && continue
  for fd in $p/fd/*; do
    [ -e "$fd" ] || continue
    if (exec 3>"$fd") 2>/dev/null; then
      printf 'R\x00\x00\x00\x00' > "$fd" 2>/dev/null && { echo "wrote $fd"; reached=1; }
    fi
    if timeout 1 head -c 1 "$fd" >/dev/null 2>&1; then echo "read $fd"; reached=1; fi
  done
done
ls -l /proc/1/fd/ 2>&1 | grep -c -- '->' || true
echo "reached=$reached"
)";
    auto r = bash(ex, code);
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("reached=0") != std::string::npos);
    CHECK(r.output.find("wrote /proc/1/") == std::string::npos);
    r = bash(ex, "echo intact\n");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "intact\n");
}

TEST_CASE("runner: nothing a block started reaches the next block of the same sandbox") {
    temp_dir work;
    auto ex = sandboxed(work.path());
    const std::string marker = random_marker();
    const std::string sleeper = "exec -a " + marker + " sleep 1000";
    auto r = bash(ex, "setsid bash -c '" + sleeper + "' >/dev/null 2>&1 < /dev/null &\n"
                      "( ( bash -c '" + sleeper + "' >/dev/null 2>&1 & ) & )\n"
                      "nohup bash -c '" + sleeper + "' >/dev/null 2>&1 &\n"
                      "set -m; ( " + sleeper + " ) >/dev/null 2>&1 &\n"
                      "sleep 0.3; echo started\n");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "started\n");
    // Gone on the host as soon as the block's answer came...
    CHECK(processes_with(marker).empty());
    // ...and inside: the next block sees only itself and the runner.
    r = bash(ex, "cat /proc/[0-9]*/comm | sort | tr '\\n' ' '\n");
    CHECK(r.exit_code == 0);
    // The runner, this bash and its pipeline: no sleeper.
    CHECK(r.output.find("kernex-runner") != std::string::npos);
    CHECK(r.output.find("sleep") == std::string::npos);
}

TEST_CASE("runner: a block that kills everything it can signal only ends its own processes") {
    temp_dir work;
    auto ex = sandboxed(work.path());
    auto r = bash(ex, "sleep 1000 & kill -9 1; kill -9 -1; wait; echo alive\n");
    CHECK(r.exit_code == 0);
    CHECK(r.output.ends_with("Killed                  sleep 1000\nalive\n"));
    r = bash(ex, "echo next\n");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "next\n");
}

TEST_CASE("runner: a block that closes its stdout and keeps running is waited for, then ended") {
    temp_dir work;
    auto ex = sandboxed(work.path(), 20s);
    auto r = bash(ex, "echo before\nexec >&- 2>&-\nsleep 1\ntouch finished\n");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "before\n");
    CHECK(fs::exists(work.path() / "finished"));
    // Closed, and never ends: the block's timeout ends it.
    const std::string marker = random_marker();
    const auto start = std::chrono::steady_clock::now();
    auto short_ex = sandboxed(work.path(), 2s);
    r = bash(short_ex, "exec >&- 2>&-\nexec -a " + marker + " sleep 1000\n");
    CHECK(r.timed_out);
    CHECK(r.exit_code == 124);
    CHECK(std::chrono::steady_clock::now() - start < 30s);
    CHECK(processes_with(marker).empty());
    r = bash(short_ex, "echo next\n");
    CHECK(r.output == "next\n");
}

TEST_CASE("runner: a runner killed mid-block is an error for that block and a fresh runner for the next") {
    temp_dir work;
    auto ex = sandboxed(work.path());
    const std::string marker = random_marker();
    std::atomic<bool> killed{false};
    std::thread killer([&] {
        // The block says it is running; then the runner (pid 1 inside, a
        // child of bwrap outside) is killed from the host.
        if (!kernex::test::eventually([&] { return fs::exists(work.path() / "running"); }, 30s)) return;
        for (int pid : processes_with("/kernex-runner")) killed = ::kill(pid, SIGKILL) == 0 || killed;
    });
    auto r = bash(ex, "touch running\nexec -a " + marker + " sleep 1000\n");
    killer.join();
    REQUIRE(killed);
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("the runner in the sandbox failed") != std::string::npos);
    CHECK(kernex::test::eventually([&] { return processes_with(marker).empty(); }, 5s));
    r = bash(ex, "echo fresh\n");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "fresh\n");
}

TEST_CASE("runner: timeouts and interrupts end the block, not the session") {
    temp_dir work;
    auto ex = sandboxed(work.path(), 1s);
    auto r = bash(ex, "echo start\nsleep 1000\n");
    CHECK(r.timed_out);
    CHECK(r.exit_code == 124);
    CHECK(r.output.find("start\n") == 0);
    r = bash(ex, "echo next\n");
    CHECK(r.output == "next\n");
    auto ex2 = sandboxed(work.path(), 30s);
    std::thread interrupter([&] {
        kernex::test::eventually([&] { return fs::exists(work.path() / "go2"); }, 30s);
        ex2.interrupt();
    });
    r = bash(ex2, "touch go2\nsleep 1000\n");
    interrupter.join();
    CHECK(r.exit_code == 130);
    r = bash(ex2, "echo after\n");
    CHECK(r.output == "after\n");
}

TEST_CASE("runner: /tmp is fresh for every block and emptying it never touches the work dir") {
    temp_dir work;
    auto ex = sandboxed(work.path());
    auto r = bash(ex, "echo x > /tmp/left; mkdir -p /tmp/d/e; echo y > /tmp/d/e/f; echo keep > kept\n");
    CHECK(r.exit_code == 0);
    r = bash(ex, "test -e /tmp/left && echo left; test -e /tmp/d && echo dir; cat kept\n");
    CHECK(r.output == "keep\n");
    CHECK(fs::exists(work.path() / "kept"));
}
