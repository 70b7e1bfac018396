// The gateway module against a real Jupyter Server (Debian's
// python3-jupyter-server) started by these tests: REST, the websocket
// transport under kernel_client, remote kernels behind kernel_manager,
// jupyter_executor and multi_kernel_manager, the CLI, TLS, and the ways a
// remote kernel goes away (deleted, crashed and restarted by the server,
// server killed mid-cell), none of which may hang.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "../helpers/test_support.hpp"
#include "../mcp/session_backend.hpp"
#include "jupyter_server.hpp"
#include "kernex/error.hpp"
#include "kernex/executor.hpp"
#include "kernex/kernel_manager.hpp"
#include "kernex/multi_kernel_manager.hpp"
#include "kernex/process.hpp"
#include "kernex/remote_kernel.hpp"

using namespace kernex;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

namespace {

// One server for the tests that do not kill theirs; stopped at exit.
test::jupyter_server& server() {
    static test::jupyter_server s;
    return s;
}

std::mutex g_notices_mutex;
std::vector<std::string> g_notices;

void clear_notices() {
    std::lock_guard lock(g_notices_mutex);
    g_notices.clear();
}

bool noticed(const std::string& text) {
    std::lock_guard lock(g_notices_mutex);
    return std::any_of(g_notices.begin(), g_notices.end(),
                       [&](const std::string& n) { return n.find(text) != std::string::npos; });
}

std::string all_notices() {
    std::lock_guard lock(g_notices_mutex);
    std::string out;
    for (const auto& n : g_notices) out += n + "\n";
    return out;
}

gateway_options with_notices(gateway_options o) {
    o.liveness_period = 1s;
    o.on_notice = [](const std::string& text) {
        std::lock_guard lock(g_notices_mutex);
        g_notices.push_back(text);
    };
    return o;
}

gateway_options opts() { return with_notices(server().options()); }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

double seconds_since(steady::time_point t0) { return std::chrono::duration<double>(steady::now() - t0).count(); }

bool server_has_kernel(const std::string& id) {
    auto kernels = gateway_client(opts()).kernels();
    return std::any_of(kernels.begin(), kernels.end(), [&](const remote_kernel_model& k) { return k.id == id; });
}

template <typename F>
error caught(F&& f) {
    try {
        f();
    } catch (const error& e) {
        return e;
    }
    FAIL("no kernex::error was thrown");
    return error(errc::io_error, "unreachable");
}

fs::path kernex_exe() {
    const char* exe = std::getenv("KERNEX_EXE");
    REQUIRE_MESSAGE(exe, "KERNEX_EXE is not set (run through meson test)");
    return exe;
}

run_result run_cli(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    spawn_options so;
    so.argv = std::move(args);
    so.argv.insert(so.argv.begin(), kernex_exe().string());
    so.env = std::move(env);
    so.env.emplace("KERNEX_GATEWAY_URL", "");
    so.env.emplace("KERNEX_GATEWAY_TOKEN", "");
    run_options limits;
    limits.timeout = 90s;
    return run_process(so, limits);
}

}  // namespace

TEST_CASE("REST: status, kernelspecs, kernels and not-found errors") {
    gateway_client gc(opts());
    CHECK(gc.status().contains("started"));
    CHECK(gc.display_url() == server().url());

    auto specs = gc.kernelspecs();
    CHECK(specs.default_name == "python3");
    auto python = std::find_if(specs.specs.begin(), specs.specs.end(), [](const kernelspec& k) { return k.name == "python3"; });
    REQUIRE(python != specs.specs.end());
    CHECK(python->language == "python");
    CHECK(!python->display_name.empty());
    CHECK(gc.kernelspec_named("python3").language == "python");

    auto e = caught([&] { gc.kernelspec_named("no-such-kernel"); });
    CHECK(e.code() == errc::not_found);
    CHECK(contains(e.what(), "no-such-kernel"));
    CHECK(contains(e.what(), "python3"));  // what there is instead

    const std::string missing = "00000000-0000-0000-0000-000000000000";
    for (auto* call : {+[](const gateway_client& g, const std::string& id) { g.kernel(id); },
                       +[](const gateway_client& g, const std::string& id) { g.delete_kernel(id); },
                       +[](const gateway_client& g, const std::string& id) { g.interrupt_kernel(id); }}) {
        e = caught([&] { call(gc, missing); });
        CHECK(e.code() == errc::not_found);
        CHECK(contains(e.what(), missing));
    }
    e = caught([&] { gc.connect(missing, "s"); });
    CHECK(e.code() == errc::not_found);
    e = caught([&] { remote_kernel::start(opts(), {.kernel_name = "no-such-kernel"}); });
    CHECK(e.code() == errc::not_found);
}

TEST_CASE("a wrong or missing token is refused, the message says what to do and never shows a token") {
    auto o = opts();
    o.token = "wrong-token-7f3a";
    auto e = caught([&] { gateway_client(o).kernels(); });
    CHECK(e.code() == errc::permission_denied);
    CHECK(contains(e.what(), "--token"));
    CHECK(contains(e.what(), "KERNEX_GATEWAY_TOKEN"));
    CHECK(!contains(e.what(), "wrong-token-7f3a"));
    CHECK(!contains(e.what(), server().token()));
    e = caught([&] { remote_kernel::start(o); });
    CHECK(e.code() == errc::permission_denied);

    o.token.clear();
    e = caught([&] { gateway_client(o).kernelspecs(); });
    CHECK(e.code() == errc::permission_denied);
    CHECK(contains(e.what(), "no token was given"));

    // A token in the URL's query, as Jupyter prints it, is used and not shown.
    o.url = server().url() + "/?token=" + server().token();
    gateway_client gc(o);
    CHECK_NOTHROW(gc.kernelspecs());
    CHECK(!contains(gc.display_url(), server().token()));
}

TEST_CASE("bad URLs, refused connections and silent servers: clear errors within the deadline") {
    gateway_options o;
    o.url = "ftp://127.0.0.1:1";
    CHECK(caught([&] { gateway_client{o}; }).code() == errc::invalid_argument);

    o.url = "http://127.0.0.1:" + std::to_string(test::free_port());
    auto e = caught([&] { gateway_client(o).status(); });
    CHECK(e.code() == errc::gateway_error);
    CHECK(contains(e.what(), "refused"));
    CHECK(contains(e.what(), "is it running"));

    // Accepts connections (the kernel's backlog does) and never answers.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    o.url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    o.request_timeout = 300ms;
    auto t0 = steady::now();
    e = caught([&] { gateway_client(o).kernels(); });
    CHECK(e.code() == errc::timeout);
    CHECK(seconds_since(t0) < 3);
    t0 = steady::now();
    CHECK(caught([&] { gateway_client(o).connect("00000000-0000-0000-0000-000000000000", "s"); }).code() ==
          errc::timeout);
    CHECK(seconds_since(t0) < 3);
    ::close(fd);
}

TEST_CASE("a remote kernel behind kernel_manager: state, stdin, completion, images, buffers, interrupt, restart, delete") {
    kernel_options ko;
    ko.kernel_name = "python3";
    ko.gateway = opts();
    auto km = kernel_manager::start(ko);
    gateway_client gc(opts());
    CHECK(!km.id().empty());
    CHECK(km.spec().language == "python");
    CHECK(km.pid() == -1);
    CHECK(km.alive());
    CHECK(server_has_kernel(km.id()));
    auto& kc = km.client();

    auto r = kc.execute("x = 41");
    CHECK(r.status == execution_status::ok);
    r = kc.execute("x + 1");
    CHECK(r.result_text() == "42");
    r = kc.execute("print('out'); import sys; print('err', file=sys.stderr)");
    CHECK(contains(r.stream_text(), "out\n"));
    CHECK(contains(r.stream_text(), "err\n"));

    std::string prompt;
    r = kc.execute("name = input('who? ')\nprint('hi', name)", {.on_input = [&](const input_request& q) {
                                                                     prompt = q.prompt;
                                                                     return std::string("kernex");
                                                                 }});
    CHECK(r.status == execution_status::ok);
    CHECK(prompt == "who? ");
    CHECK(r.stream_text() == "hi kernex\n");

    auto matches = kc.complete("import o", 8).value("matches", json::array());
    CHECK(std::find(matches.begin(), matches.end(), "os") != matches.end());
    CHECK(kc.is_complete("for i in x:").value("status", "") == "incomplete");

    r = kc.execute("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n%matplotlib inline\n"
                   "plt.plot([3, 1, 2])\nplt.show()");
    CHECK(r.status == execution_status::ok);
    bool png = false;
    for (const auto& o : r.outputs)
        if (auto* d = std::get_if<outputs::display_data>(&o))
            png = png || (d->data.contains("image/png") && d->data["image/png"].get<std::string>().size() > 1000);
    CHECK(png);

    {
        // Binary frames: a comm message with buffers, seen on a second
        // connection (ready first: the server subscribes its iopub after the
        // handshake).
        auto session = new_id();
        kernel_client second(gc.connect(km.id(), session), session);
        second.wait_for_ready(30s);
        auto& watcher = second.get_transport();
        r = kc.execute("from ipykernel.comm import Comm\n"
                       "c = Comm(target_name='kx', data={'a': 1}, buffers=[b'\\x00\\x01buf'])");
        CHECK(r.status == execution_status::ok);
        bool seen = false;
        incoming in;
        auto deadline = steady::now() + 10s;
        while (!seen && watcher.receive(deadline, in) == receive_status::message)
            if (in.message.msg_type() == "comm_open") {
                REQUIRE(in.message.buffers.size() == 1);
                CHECK(in.message.buffers[0] == std::string("\0\1buf", 5));
                CHECK(in.message.content["data"]["a"] == 1);
                seen = true;
            }
        CHECK(seen);
        CHECK(watcher.rejected().total() == 0);
    }

    // The websocket refuses a wrong token too.
    auto bad = opts();
    bad.token = "nope-nope";
    CHECK(caught([&] { gateway_client(bad).connect(km.id(), "s"); }).code() == errc::permission_denied);

    // Cells that end in an error do not stop_on_error: ipykernel would abort
    // a request that arrives right after one (its abort window), by design.
    // Interrupt (REST) from another thread while the cell runs.
    auto t0 = steady::now();
    std::thread interrupter([&] {
        std::this_thread::sleep_for(1500ms);
        km.interrupt();
    });
    r = kc.execute("import time\ntime.sleep(30)\nprint('not reached')", {.stop_on_error = false});
    interrupter.join();
    CHECK(r.status == execution_status::error);
    REQUIRE(r.error());
    CHECK(r.error()->ename == "KeyboardInterrupt");
    CHECK(seconds_since(t0) < 15);

    // A timeout interrupts; the session (x) survives.
    r = kc.execute("time.sleep(30)", {.stop_on_error = false, .timeout = 1s});
    CHECK(r.status == execution_status::timeout);
    CHECK(!r.restarted);
    r = kc.execute("x");
    CHECK(r.result_text() == "41");

    km.restart();
    r = kc.execute("x", {.stop_on_error = false});
    CHECK(r.status == execution_status::error);
    CHECK(r.error()->ename == "NameError");
    r = kc.execute("1 + 1");
    INFO("status ", to_string(r.status), ", note: ", r.note);
    CHECK(r.result_text() == "2");
    CHECK(kc.rejected().total() == 0);

    std::string id = km.id();
    km.shutdown();
    CHECK(caught([&] { gc.kernel(id); }).code() == errc::not_found);
    CHECK(!server_has_kernel(id));
}

TEST_CASE("a crashed kernel: the server restarts it, the cell ends with kernel_died, the next cell runs") {
    auto rk = remote_kernel::start(opts(), {.kernel_name = "python3"});
    std::atomic<int> restarted{0};
    rk.on_restarted([&] { ++restarted; });
    auto& kc = rk.client();
    CHECK(kc.execute("y = 1").status == execution_status::ok);
    auto t0 = steady::now();
    auto r = kc.execute("import os\nos.kill(os.getpid(), 9)", {.timeout = 60s});
    CHECK(r.status == execution_status::kernel_died);
    CHECK(seconds_since(t0) < 30);
    r = kc.execute("print('again')", {.timeout = 60s});
    CHECK(r.status == execution_status::ok);
    CHECK(r.stream_text() == "again\n");
    r = kc.execute("y", {.timeout = 10s});
    CHECK(r.status == execution_status::error);  // a new process: the state is gone
    CHECK(rk.restart_count() == 1);
    CHECK(restarted == 1);
}

TEST_CASE("a dropped websocket reconnects once and says so; a kernel deleted mid-cell ends it with kernel_died") {
    clear_notices();
    auto rk = remote_kernel::start(opts());
    auto& kc = rk.client();
    CHECK(kc.execute("z = 5").status == execution_status::ok);

    // Another connection with our session id: the server closes ours as stale.
    {
        auto other = rk.gateway().connect(rk.id(), kc.session());
        std::this_thread::sleep_for(300ms);
    }
    auto r = kc.execute("z + 1", {.timeout = 30s});
    CHECK(r.result_text() == "6");
    CHECK_MESSAGE(noticed("reconnected"), all_notices());

    // Deleted by someone else mid-cell. Jupyter Server interrupts a kernel
    // before it shuts it down: a cell that ignores SIGINT is still running
    // when the kernel goes, and must end with kernel_died.
    std::string id = rk.id();
    std::thread deleter([&] {
        std::this_thread::sleep_for(1500ms);
        gateway_client(opts()).delete_kernel(id);
    });
    auto t0 = steady::now();
    r = kc.execute("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)");
    deleter.join();
    CHECK(r.status == execution_status::kernel_died);  // no timeout: only the death can end it
    CHECK(seconds_since(t0) < 20);
    CHECK_MESSAGE(noticed("no longer exists"), all_notices());
    t0 = steady::now();
    CHECK(kc.execute("1").status == execution_status::kernel_died);
    CHECK(seconds_since(t0) < 2);
    CHECK(!rk.alive());
    rk.shutdown();  // already deleted: nothing to do, no error
}

TEST_CASE("the server killed mid-cell gives kernel_died, not a hang") {
    clear_notices();
    test::jupyter_server own;
    auto o = with_notices(own.options());
    o.request_timeout = 5s;
    auto rk = remote_kernel::start(o);
    auto& kc = rk.client();
    auto pid_text = kc.execute("import os\nprint(os.getpid())").stream_text();
    int kernel_pid = std::atoi(pid_text.c_str());
    CHECK(kernel_pid > 0);

    std::thread killer([&] {
        std::this_thread::sleep_for(1500ms);
        own.kill_now();
    });
    auto t0 = steady::now();
    auto r = kc.execute("import time\ntime.sleep(60)");
    killer.join();
    CHECK(r.status == execution_status::kernel_died);
    CHECK(seconds_since(t0) < 20);
    CHECK_MESSAGE(noticed("reconnecting failed"), all_notices());
    t0 = steady::now();
    rk.shutdown();
    CHECK(seconds_since(t0) < 6);
    // The kernel lost its server (we started both): end it by its pid.
    if (kernel_pid > 0) ::kill(kernel_pid, SIGKILL);
}

TEST_CASE("jupyter_executor through make_executor with a gateway URL") {
    test::temp_dir out;
    json config = {{"executor", "jupyter"},
                   {"gateway_url", server().url()},
                   {"gateway_token", server().token()},
                   {"output_dir", out.path().string()},
                   {"timeout", 30}};
    auto ex = make_executor(config);
    auto run = [&](const std::string& md) { return ex->execute(extract_code_blocks(md)); };
    auto r1 = run("```python\nv = 40\nprint('set')\n```");
    CHECK(r1.exit_code == 0);
    CHECK(r1.output == "set\n");
    auto r2 = run("```python\nv + 2\n```");
    CHECK(r2.output == "42\n");
    auto plot = run("```python\nimport matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                    "%matplotlib inline\nplt.plot([3, 1, 2])\nplt.show()\n```");
    CHECK(plot.exit_code == 0);
    REQUIRE(plot.output_files.size() == 1);
    CHECK(plot.output_files[0].extension() == ".png");
    CHECK(plot.output_files[0].parent_path() == out.path());
    CHECK(fs::file_size(plot.output_files[0]) > 1000);
    auto err = run("```python\n1 / 0\n```");
    CHECK(err.exit_code == 1);
    CHECK(contains(err.output, "ZeroDivisionError"));
    auto before = gateway_client(opts()).kernels().size();
    ex->stop();
    CHECK(gateway_client(opts()).kernels().size() == before - 1);

    json bad = {{"executor", "jupyter"}, {"gateway_token", "t"}};
    CHECK(caught([&] { make_executor(bad); }).code() == errc::invalid_argument);
}

TEST_CASE("multi_kernel_manager works on remote kernels unchanged") {
    multi_kernel_manager mkm;
    kernel_options ko;
    ko.gateway = opts();
    std::string a, b;
    std::thread ta([&] { a = mkm.start(ko); });
    std::thread tb([&] { b = mkm.start(ko); });
    ta.join();
    tb.join();
    REQUIRE(!a.empty());
    REQUIRE(!b.empty());
    CHECK(mkm.list().size() == 2);
    CHECK(mkm.get(a)->client().execute("k = 'a'; k").result_text() == "'a'");
    CHECK(mkm.get(b)->client().execute("'k' in dir()").result_text() == "False");
    mkm.shutdown(a);
    CHECK(!server_has_kernel(a));
    mkm.shutdown_all();
    CHECK(!server_has_kernel(b));
}

TEST_CASE("CLI: kernex kernelspec list / run / exec with --gateway, tokens from flags or the environment") {
    test::temp_dir tmp;
    const std::string url = server().url(), token = server().token();

    auto r = run_cli({"kernelspec", "list", "--gateway", url}, {{"KERNEX_GATEWAY_TOKEN", token}});
    INFO("kernex printed: ", r.output);
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "python3"));
    CHECK(contains(r.output, "Python 3"));
    CHECK(!contains(r.output, token));

    r = run_cli({"kernelspec", "list", "--json"}, {{"KERNEX_GATEWAY_URL", url}, {"KERNEX_GATEWAY_TOKEN", token}});
    CHECK(r.exit_code == 0);
    CHECK(json::parse(r.output)["kernelspecs"].contains("python3"));

    test::write_file(tmp / "cells.py", "# %%\nx = 2\n# %%\nprint(x * 21)\n");
    r = run_cli({"run", "--gateway", url, "--token", token, (tmp / "cells.py").string()});
    CHECK(r.exit_code == 0);
    CHECK(r.output == "42\n");

    test::write_file(tmp / "reply.md", "Here:\n```python\nprint(sum(range(10)))\n```\n");
    r = run_cli({"exec", "--executor", "jupyter", (tmp / "reply.md").string()},
                {{"KERNEX_GATEWAY_URL", url}, {"KERNEX_GATEWAY_TOKEN", token}});
    CHECK(r.exit_code == 0);
    CHECK(r.output == "45\n");
    r = run_cli({"exec", "--executor", "jupyter", "--gateway", url, "--token", token, "--json",
                 (tmp / "reply.md").string()});
    CHECK(r.exit_code == 0);
    CHECK(json::parse(r.output)["output"] == "45\n");

    {
        // --existing KERNEL_ID: a kernel already on the server, used and left running.
        auto rk = remote_kernel::start(opts());
        CHECK(rk.client().execute("x = 20").status == execution_status::ok);
        test::write_file(tmp / "more.py", "print(x + 1)\n");
        r = run_cli({"run", "--gateway", url, "--existing", rk.id(), (tmp / "more.py").string()},
                    {{"KERNEX_GATEWAY_TOKEN", token}});
        CHECK(r.exit_code == 0);
        CHECK(r.output == "21\n");
        CHECK(server_has_kernel(rk.id()));
    }

    r = run_cli({"run", "--gateway", url, "--token", "wrongtoken123", (tmp / "cells.py").string()});
    CHECK(r.exit_code == 2);
    CHECK(contains(r.output, "--token"));
    CHECK(!contains(r.output, "wrongtoken123"));
    CHECK(!contains(r.output, token));
}

TEST_CASE("https: verified against a CA file, clear errors without it or for the wrong host, verification off") {
    test::temp_dir tmp;
    spawn_options openssl;
    openssl.argv = {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", (tmp / "key.pem").string(),
                    "-out", (tmp / "cert.pem").string(), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"};
    run_options limits;
    limits.timeout = 60s;
    auto gen = run_process(openssl, limits);
    INFO("openssl req: ", gen.output);
    REQUIRE(gen.exit_code == 0);
    test::jupyter_server tls({.certfile = tmp / "cert.pem", .keyfile = tmp / "key.pem"});
    auto o = with_notices(tls.options());

    auto e = caught([&] { gateway_client(o).status(); });
    CHECK(e.code() == errc::gateway_error);
    CHECK(contains(e.what(), "certificate verification failed"));
    CHECK(contains(e.what(), "--gateway-ca"));

    o.ca_file = tmp / "cert.pem";
    CHECK_NOTHROW(gateway_client(o).status());
    {
        auto rk = remote_kernel::start(o);
        CHECK(rk.client().execute("6 * 7").result_text() == "42");
    }

    auto wrong_host = o;
    wrong_host.url = "https://localhost:" + std::to_string(tls.port());
    e = caught([&] { gateway_client(wrong_host).status(); });
    CHECK(e.code() == errc::gateway_error);
    CHECK(contains(e.what(), "verification failed"));

    auto unverified = tls.options();
    unverified.verify_tls = false;
    CHECK_NOTHROW(gateway_client(unverified).status());

    auto missing_ca = tls.options();
    missing_ca.ca_file = tmp / "nope.pem";
    CHECK(caught([&] { gateway_client{missing_ca}; }).code() == errc::not_found);
}

TEST_CASE("kernex mcp --gateway: sessions on the Jupyter Server through the MCP SDK client; none left after") {
    auto& s = server();
    std::set<std::string> before;
    for (const auto& k : gateway_client(opts()).kernels()) before.insert(k.id);
    const nlohmann::json args = {"--gateway", s.url(), "--gateway-token", s.token()};
    // The server's kernels are its children.
    const nlohmann::json probe = {{"code", "import os; print(os.getppid())"}, {"expect", std::to_string(s.pid())}};
    const auto r = test::run_mcp_session_backend({{"KERNEX_MCP_SESSION_ARGS", args.dump()},
                                                  {"KERNEX_MCP_PROBE", probe.dump()},
                                                  {"KERNEX_MCP_IMAGES", "1"},
                                                  {"KERNEX_GATEWAY_URL", ""},
                                                  {"KERNEX_GATEWAY_TOKEN", ""}});
    MESSAGE(r.output);
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("fail 0") != std::string::npos);
    // Every session's remote kernel was deleted when the server ended.
    std::vector<std::string> left;
    for (const auto& k : gateway_client(opts()).kernels())
        if (!before.contains(k.id)) left.push_back(k.id);
    CHECK(left.empty());
}
