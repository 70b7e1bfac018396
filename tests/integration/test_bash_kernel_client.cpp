// kernex-bash driven by kernex's own kernel_manager and kernel_client: the
// behaviour a kernex user sees (state, streaming, interrupt, exit, display,
// exit statuses, nothing left behind). The kernel's protocol conformance is
// tested with Debian's jupyter_kernel_test (test_bash_kernel_conformance.py).
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include <doctest/doctest.h>

#include "kernex/kernel_manager.hpp"
#include "kernex/process.hpp"
#include "kernex/output_files.hpp"

#include "../helpers/test_support.hpp"

using namespace std::chrono_literals;
using namespace kernex;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

fs::path make_temp_dir(const char* prefix) {
    std::string tmpl = std::string("/tmp/") + prefix + "-XXXXXX";
    char* made = ::mkdtemp(tmpl.data());
    REQUIRE(made != nullptr);
    return made;
}

// A fresh runtime dir per test (the connection file goes there) and a scratch
// directory for the cells; both removed at the end.
struct temp_dirs {
    fs::path runtime = make_temp_dir("kernex-bk-rt");
    fs::path scratch = make_temp_dir("kernex-bk-work");
    temp_dirs() { ::setenv("JUPYTER_RUNTIME_DIR", runtime.c_str(), 1); }
    ~temp_dirs() {
        std::error_code ec;
        fs::remove_all(runtime, ec);
        fs::remove_all(scratch, ec);
    }
};

kernel_options bash_kernel() {
    kernel_options o;
    o.kernel_name = "kernex-bash";
    o.ready_timeout = 60s;
    return o;
}

// A cell that must succeed; its stdout.
std::string run_ok(kernel_client& kc, const std::string& code) {
    auto r = kc.execute(code, {.timeout = 60s});
    INFO("cell: " << code << "\noutput: " << r.stream_text());
    REQUIRE(r.status == execution_status::ok);
    return r.stream_text();
}

std::string stderr_text(const execution& r) {
    std::string text;
    for (const auto& o : r.outputs)
        if (auto* s = std::get_if<outputs::stream>(&o); s && s->name == "stderr") text += s->text;
    return text;
}

bool alive(int pid) {
    auto s = test::stat_of(pid);
    return s && s->state != 'Z' && s->state != 'X';
}

using test::eventually;
using test::group_members;

// A 3x3 RGB PNG (made for this test with zlib and the PNG chunk layout).
constexpr const char* tiny_png_base64 =
    "iVBORw0KGgoAAAANSUhEUgAAAAMAAAADCAIAAADZSiLoAAAAD0lEQVR42mNgaPgPRVhYAMEgDXigfNo9AAAAAElFTkSuQmCC";

}  // namespace

TEST_CASE("kernex-bash: variables, the working directory and functions persist between cells") {
    temp_dirs dirs;
    auto km = kernel_manager::start(bash_kernel());
    auto& kc = km.client();
    CHECK(kc.kernel_info()["language_info"]["name"] == "bash");

    run_ok(kc, "plain=41; export EXPORTED=yes; declare -a arr=(a b c)");
    run_ok(kc, "cd '" + dirs.scratch.string() + "'");
    run_ok(kc, "inc() { echo $(( $1 + 1 )); }");
    CHECK(run_ok(kc, "inc $plain") == "42\n");
    CHECK(run_ok(kc, "echo \"$EXPORTED ${arr[2]}\"; sh -c 'echo $EXPORTED'") == "yes c\nyes\n");
    CHECK(run_ok(kc, "pwd") == dirs.scratch.string() + "\n");
    run_ok(kc, "echo data > here.txt");
    CHECK(fs::exists(dirs.scratch / "here.txt"));

    auto a = kc.execute("true", {.timeout = 60s});
    auto b = kc.execute("true", {.timeout = 60s});
    CHECK(b.execution_count == a.execution_count + 1);
}

TEST_CASE("kernex-bash: output streams to on_output while the cell runs") {
    temp_dirs dirs;
    auto km = kernel_manager::start(bash_kernel());
    auto& kc = km.client();

    std::string streamed;
    std::optional<clock_type::duration> first_line_at;
    auto started = clock_type::now();
    auto r = kc.execute("for i in 1 2 3; do echo $i; sleep 1; done",
                        {.timeout = 60s, .on_output = [&](const output& o) {
                             auto* s = std::get_if<outputs::stream>(&o);
                             if (!s) return;
                             streamed += s->text;
                             if (!first_line_at && streamed.find('\n') != std::string::npos)
                                 first_line_at = clock_type::now() - started;
                         }});
    auto total = clock_type::now() - started;
    CHECK(r.status == execution_status::ok);
    CHECK(streamed == "1\n2\n3\n");
    CHECK(r.stream_text() == "1\n2\n3\n");
    REQUIRE(first_line_at);
    using ms = std::chrono::milliseconds;
    INFO("first line after " << std::chrono::duration_cast<ms>(*first_line_at).count() << " ms, cell took "
                             << std::chrono::duration_cast<ms>(total).count() << " ms");
    // The loop sleeps 3 s in all; the first line is printed before the first
    // sleep. Generous for a loaded machine: it must come at least 1.5 s
    // before the end (2 s of sleeping are left after it).
    CHECK(total >= 3s);
    CHECK(*first_line_at + 1500ms < total);
}

TEST_CASE("kernex-bash: interrupt from another thread stops the command and keeps the shell") {
    temp_dirs dirs;
    auto km = kernel_manager::start(bash_kernel());
    auto& kc = km.client();
    run_ok(kc, "kept=still-here; cd '" + dirs.scratch.string() + "'");
    auto shell = run_ok(kc, "echo $$");

    // Interrupt once the cell is known to run (an interrupt between cells is dropped).
    // An exception must not escape the thread: std::terminate would leave
    // the kernel running.
    std::atomic<bool> running{false};
    std::atomic<bool> finished{false};
    std::string interrupt_failure;
    std::thread interrupter([&] {
        while (!running && !finished) std::this_thread::sleep_for(10ms);
        if (finished) return;
        std::this_thread::sleep_for(200ms);
        try {
            km.interrupt();
        } catch (const std::exception& e) {
            interrupt_failure = e.what();
        }
    });
    auto started = clock_type::now();
    auto r = kc.execute("echo started; sleep 100; echo not-reached",
                        {.timeout = 60s, .on_output = [&](const output& o) {
                             if (std::get_if<outputs::stream>(&o)) running = true;
                         }});
    finished = true;
    interrupter.join();
    auto took = clock_type::now() - started;

    CHECK(interrupt_failure == "");
    CHECK(r.status == execution_status::error);
    CHECK(took < 30s);
    REQUIRE(r.error());
    CHECK(r.error()->ename == "Interrupted");
    CHECK(r.stream_text() == "started\n");
    // Same shell, same state.
    CHECK(run_ok(kc, "echo \"$kept $PWD $$\"") == "still-here " + dirs.scratch.string() + " " + shell);
}

TEST_CASE("kernex-bash: a cell that runs exit ends the shell; the next cell runs in a fresh one") {
    temp_dirs dirs;
    auto km = kernel_manager::start(bash_kernel());
    auto& kc = km.client();
    run_ok(kc, "lost=yes");
    int first_shell = std::stoi(run_ok(kc, "echo $$"));
    int kernel_pid = km.pid();

    auto r = kc.execute("exit 3", {.timeout = 60s});
    CHECK(r.status == execution_status::error);
    REQUIRE(r.error());
    CHECK(r.error()->evalue == "3");
    CHECK(stderr_text(r).find("shell ended") != std::string::npos);
    CHECK(eventually([&] { return !alive(first_shell); }));

    std::istringstream next(run_ok(kc, "echo \"[${lost-}] $$\""));
    std::string lost;
    int shell = 0;
    next >> lost >> shell;
    CHECK(lost == "[]");
    CHECK(shell != first_shell);
    // The kernel itself was not restarted: only its shell was.
    CHECK(km.pid() == kernel_pid);
    CHECK(km.restart_count() == 0);

    // A plain exit is not an error.
    auto plain = kc.execute("exit", {.timeout = 60s});
    CHECK(plain.status == execution_status::ok);
    CHECK(run_ok(kc, "echo ok") == "ok\n");
}

TEST_CASE("kernex-bash: display of a PNG written by the cell arrives as image/png with the same bytes") {
    temp_dirs dirs;
    auto km = kernel_manager::start(bash_kernel());
    auto& kc = km.client();
    auto r = kc.execute("cd '" + dirs.scratch.string() + "'\n" + "printf '%s' '" + tiny_png_base64 +
                            "' | base64 -d > f.png\ndisplay f.png && echo shown",
                        {.timeout = 60s});
    INFO(r.stream_text());
    REQUIRE(r.status == execution_status::ok);
    CHECK(r.stream_text() == "shown\n");

    std::vector<const outputs::display_data*> shown;
    for (const auto& o : r.outputs)
        if (auto* d = std::get_if<outputs::display_data>(&o)) shown.push_back(d);
    REQUIRE(shown.size() == 1);
    const auto& data = shown[0]->data;
    REQUIRE(data.contains("image/png"));
    REQUIRE(data["image/png"].is_string());
    auto expected = base64_decode(tiny_png_base64);
    CHECK(expected.size() == 72);
    CHECK(base64_decode(data["image/png"].get<std::string>()) == expected);
    // And it is what the cell wrote.
    std::ifstream written(dirs.scratch / "f.png", std::ios::binary);
    std::string on_disk((std::istreambuf_iterator<char>(written)), std::istreambuf_iterator<char>());
    CHECK(on_disk == expected);
    CHECK(data.contains("text/plain"));
}

TEST_CASE("kernex-bash: a non-zero exit status is an error carrying the status") {
    temp_dirs dirs;
    auto km = kernel_manager::start(bash_kernel());
    auto& kc = km.client();

    auto r = kc.execute("echo before; (exit 7)", {.timeout = 60s});
    CHECK(r.status == execution_status::error);
    CHECK(r.stream_text() == "before\n");
    REQUIRE(r.error());
    CHECK(r.error()->ename == "ExitStatus");
    CHECK(r.error()->evalue == "7");
    CHECK(r.reply["status"] == "error");
    CHECK(r.reply["evalue"] == "7");

    auto missing = kc.execute("no-such-command-kernex", {.timeout = 60s});
    CHECK(missing.status == execution_status::error);
    REQUIRE(missing.error());
    CHECK(missing.error()->evalue == "127");
    CHECK(stderr_text(missing).find("command not found") != std::string::npos);

    // Only the last command counts, and $? carries over to the next cell.
    CHECK(kc.execute("false; true", {.timeout = 60s}).status == execution_status::ok);
    CHECK(kc.execute("false", {.timeout = 60s}).status == execution_status::error);
    CHECK(run_ok(kc, "echo $?") == "1\n");
}

TEST_CASE("kernex-bash: no process is left after shutdown") {
    temp_dirs dirs;
    auto km = kernel_manager::start(bash_kernel());
    auto& kc = km.client();
    int kernel_pid = km.pid();
    REQUIRE(kernel_pid > 0);
    // The shell leads its own process group; a background job joins it.
    std::istringstream pids(run_ok(kc, "echo $$; sleep 1000 & echo $!"));
    int shell = 0, job = 0;
    pids >> shell >> job;
    REQUIRE(shell > 0);
    REQUIRE(job > 0);
    CHECK(alive(kernel_pid));
    CHECK(alive(shell));
    CHECK(alive(job));
    auto group = group_members(shell);
    CHECK(std::find(group.begin(), group.end(), job) != group.end());

    km.shutdown();
    // kernel_manager reaped the kernel before returning; the shell's group
    // was ended by the kernel (its orphans are reaped by init, hence the wait).
    CHECK(!alive(kernel_pid));
    CHECK(eventually([&] { return group_members(shell).empty(); }));
    CHECK(!alive(shell));
    CHECK(!alive(job));
    CHECK(fs::is_empty(dirs.runtime));
}

TEST_CASE("kernex-bash: ends, its shell too, when the client named by JPY_PARENT_PID dies without a shutdown") {
    test::temp_dir dir;
    // The stand-in for a client that is killed (or crashes) while its kernel runs.
    spawn_options stand_in;
    stand_in.argv = {"sleep", "600"};
    child_process client_process(stand_in);
    auto conn = allocate_ports(connection_info{});
    const auto file = dir / "kernel.json";
    write_connection_file(file, conn);
    spawn_options so;
    so.argv = find_kernelspec("kernex-bash").render_argv(file);
    so.env = {{"JPY_PARENT_PID", std::to_string(client_process.pid())}};
    so.stdout_mode = so.stderr_mode = output_mode::null;
    child_process kernel(so);
    auto kc = kernel_client::from_connection_info(conn, {.heartbeat_period = 0ms});
    kc.wait_for_ready(60s);
    const int shell = std::stoi(run_ok(kc, "echo $$"));
    CHECK(alive(shell));
    client_process.stop(0ms);
    CHECK(kernel.wait_until(clock_type::now() + 10s).has_value());
    CHECK(test::process_gone(shell, 5000ms));
}

TEST_CASE("kernex-bash: read on the shell's stdin asks on_input; redirected reads do not") {
    temp_dirs dirs;
    auto km = kernel_manager::start(bash_kernel());
    auto& kc = km.client();
    std::vector<input_request> asked;
    auto answer = [&](const input_request& q) {
        asked.push_back(q);
        return std::string(q.password ? "secret" : "kx");
    };
    auto r = kc.execute("read -p 'name? ' N; echo \"hello $N\"; read -rs -p 'pw: ' P; echo ${#P}",
                        {.timeout = 60s, .on_input = answer});
    INFO(r.stream_text());
    REQUIRE(r.status == execution_status::ok);
    CHECK(r.stream_text() == "hello kx\n6\n");
    REQUIRE(asked.size() == 2);
    CHECK(asked[0].prompt == "name? ");
    CHECK_FALSE(asked[0].password);
    CHECK(asked[1].prompt == "pw: ");
    CHECK(asked[1].password);

    r = kc.execute("echo piped | { read v; echo $v; }; read w < <(echo file); echo $w",
                   {.timeout = 60s, .on_input = answer});
    CHECK(r.stream_text() == "piped\nfile\n");
    CHECK(asked.size() == 2);

    // A client that allows no stdin: EOF, as before.
    r = kc.execute("read x || echo eof", {.allow_stdin = false, .timeout = 60s, .on_input = answer});
    CHECK(r.stream_text() == "eof\n");
    CHECK(asked.size() == 2);
}
