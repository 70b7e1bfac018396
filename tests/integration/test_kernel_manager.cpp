// kernel_manager and kernel_client against real kernels: Debian's ipykernel
// and the native test kernel (tests/helpers/test_kernel.cpp), which can be
// told to misbehave.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include <doctest/doctest.h>

#include "kernex/error.hpp"
#include "kernex/kernel_manager.hpp"
#include "kernex/multi_kernel_manager.hpp"
#include "kernex/output_files.hpp"
#include "kernex/transport.hpp"

#include "../helpers/test_support.hpp"

using namespace std::chrono_literals;
using namespace kernex;
namespace fs = std::filesystem;

namespace {

// A fresh runtime dir per test, so leftover files are easy to see.
using test::children;
using test::open_fds;
using test::runtime_dir;

bool process_exists(int pid) { return ::kill(pid, 0) == 0; }

kernel_options test_kernel(std::string name = "kernex-test") {
    kernel_options o;
    o.kernel_name = std::move(name);
    o.ready_timeout = 20s;
    return o;
}

kernel_options python_kernel() {
    kernel_options o;
    o.kernel_name = "python3";
    o.ready_timeout = 60s;
    return o;
}

}  // namespace

TEST_CASE("ipykernel: state persists across cells, errors carry tracebacks") {
    runtime_dir rt;
    auto km = kernel_manager::start(python_kernel());
    auto& kc = km.client();
    auto r1 = kc.execute("x = 41", {.timeout = 30s});
    CHECK(r1.status == execution_status::ok);
    auto r2 = kc.execute("x + 1", {.timeout = 30s});
    CHECK(r2.status == execution_status::ok);
    REQUIRE(r2.result_text());
    CHECK(*r2.result_text() == "42");
    CHECK(r2.execution_count == r1.execution_count + 1);

    std::vector<std::string> streamed;
    auto r3 = kc.execute("import sys\nprint('out')\nprint('err', file=sys.stderr)",
                         {.timeout = 30s, .on_output = [&](const output& o) {
                              if (auto* s = std::get_if<outputs::stream>(&o)) streamed.push_back(s->name + ":" + s->text);
                          }});
    CHECK(r3.status == execution_status::ok);
    CHECK(streamed == std::vector<std::string>{"stdout:out\n", "stderr:err\n"});

    auto r4 = kc.execute("1/0", {.timeout = 30s});
    CHECK(r4.status == execution_status::error);
    REQUIRE(r4.error());
    CHECK(r4.error()->ename == "ZeroDivisionError");
    CHECK(!r4.error()->traceback.empty());
    CHECK(strip_ansi(r4.error()->traceback.back()).find("division by zero") != std::string::npos);

    // Other requests.
    auto info = kc.kernel_info();
    CHECK(info["language_info"]["name"] == "python");
    auto comp = kc.complete("import o", 8);
    CHECK(comp["status"] == "ok");
    auto inc = kc.is_complete("for i in range(3):");
    CHECK(inc["status"] == "incomplete");
    auto insp = kc.inspect("len", 3);
    CHECK(insp["status"] == "ok");
    CHECK(kc.history()["status"] == "ok");
    CHECK(kc.comm_info()["status"] == "ok");
}

TEST_CASE("ipykernel: stdin round trip, and no handler gives an empty answer") {
    runtime_dir rt;
    auto km = kernel_manager::start(python_kernel());
    auto& kc = km.client();
    std::string prompt_seen;
    auto r = kc.execute("name = input('who? ')\nprint('hello', name)",
                        {.timeout = 30s, .on_input = [&](const input_request& req) {
                             prompt_seen = req.prompt;
                             return std::string("kernex");
                         }});
    CHECK(r.status == execution_status::ok);
    CHECK(prompt_seen == "who? ");
    CHECK(r.stream_text().find("hello kernex") != std::string::npos);
    CHECK_FALSE(r.input_unanswered);

    auto r2 = kc.execute("v = input('x')\nprint(repr(v))", {.timeout = 30s});
    CHECK(r2.status == execution_status::ok);
    CHECK(r2.input_unanswered);
    CHECK(r2.stream_text().find("''") != std::string::npos);
}

TEST_CASE("comm_message::to_json: what kernex run --json records, buffers as base64") {
    comm_message open{"comm_open", "id1", "jupyter.widget", {{"a", 1}}, json::object(), {}, "p"};
    CHECK(open.to_json() == json{{"msg_type", "comm_open"}, {"comm_id", "id1"}, {"target_name", "jupyter.widget"},
                                 {"data", {{"a", 1}}}, {"metadata", json::object()}});
    comm_message msg{"comm_msg", "id1", "", json::object(), {{"m", true}}, {"", "a", "ab", "abc", std::string("\xff\x00\x01z", 4)}, "p"};
    const auto j = msg.to_json();
    CHECK_FALSE(j.contains("target_name"));
    CHECK(j["buffers"] == json{"", "YQ==", "YWI=", "YWJj", "/wABeg=="});
    for (std::size_t i = 0; i < msg.buffers.size(); ++i)
        CHECK(base64_decode(j["buffers"][i].get<std::string>()) == msg.buffers[i]);
}

TEST_CASE("ipykernel: comms both ways, as ipywidgets uses them (issue 18 item 5)") {
    runtime_dir rt;
    auto km = kernel_manager::start(python_kernel());
    auto& kc = km.client();
    // A target in the kernel that answers what it is sent, as a widget model does.
    auto reg = kc.execute(
        "def kx_target(comm, open_msg):\n"
        "    @comm.on_msg\n"
        "    def _got(msg):\n"
        "        c = msg['content']['data']\n"
        "        comm.send({'echo': c, 'buffers': [bytes(b).decode() for b in msg['buffers']]},\n"
        "                  buffers=[b'kx-bin'])\n"
        "    @comm.on_close\n"
        "    def _closed(msg):\n"
        "        print('closed', msg['content']['data'])\n"
        "    comm.send({'opened_with': open_msg['content']['data']})\n"
        "get_ipython().kernel.comm_manager.register_target('kx_echo', kx_target)",
        {.timeout = 30s});
    REQUIRE(reg.status == execution_status::ok);

    // Client -> kernel: open, the kernel answers on iopub with our comm_open as parent.
    const auto id = kc.comm_open("kx_echo", {{"hello", 1}});
    auto opened = kc.next_comm(20s);
    REQUIRE(opened);
    CHECK(opened->msg_type == "comm_msg");
    CHECK(opened->comm_id == id);
    CHECK(opened->data == json{{"opened_with", {{"hello", 1}}}});
    auto info = kc.comm_info("kx_echo");
    REQUIRE(info["comms"].contains(id));
    CHECK(info["comms"][id]["target_name"] == "kx_echo");

    const auto sent = kc.comm_msg(id, {{"x", 2}}, json::object(), {"raw-bytes"});
    auto echoed = kc.next_comm(20s);
    REQUIRE(echoed);
    CHECK(echoed->parent_msg_id == sent);
    CHECK(echoed->data == json{{"echo", {{"x", 2}}}, {"buffers", {"raw-bytes"}}});
    REQUIRE(echoed->buffers.size() == 1);
    CHECK(echoed->buffers[0] == "kx-bin");

    // While a cell runs, the answer to our comm_msg (sent before it) reaches on_comm.
    const auto sent2 = kc.comm_msg(id, {{"y", 3}});
    std::vector<comm_message> during;
    auto r = kc.execute("import time; time.sleep(0.2)", {.timeout = 30s, .on_comm = [&](const comm_message& c) {
                                                              during.push_back(c);
                                                          }});
    CHECK(r.status == execution_status::ok);
    REQUIRE(during.size() == 1);
    CHECK(during[0].parent_msg_id == sent2);
    CHECK(during[0].data["echo"] == json{{"y", 3}});
    CHECK(r.comms.empty());  // not the cell's own
    CHECK_FALSE(kc.next_comm(0ms));  // on_comm took it

    // Kernel -> client: a cell opens a comm to a frontend target, sends, closes.
    std::vector<std::string> seen;
    auto r2 = kc.execute(
        "from ipykernel.comm import Comm\n"
        "c = Comm(target_name='kx_front', data={'v': 1})\n"
        "c.send({'w': 2})\n"
        "c.close({'bye': 3})",
        {.timeout = 30s, .on_comm = [&](const comm_message& c) { seen.push_back(c.msg_type); }});
    CHECK(r2.status == execution_status::ok);
    CHECK(seen == std::vector<std::string>{"comm_open", "comm_msg", "comm_close"});
    REQUIRE(r2.comms.size() == 3);
    CHECK(r2.comms[0].target_name == "kx_front");
    CHECK(r2.comms[0].data == json{{"v", 1}});
    CHECK(r2.comms[1].data == json{{"w", 2}});
    CHECK(r2.comms[2].data == json{{"bye", 3}});
    CHECK(r2.comms[0].comm_id == r2.comms[2].comm_id);

    // Without on_comm they wait for next_comm, in order.
    auto r3 = kc.execute("Comm(target_name='kx_front', data={'n': 7}).close()", {.timeout = 30s});
    CHECK(r3.comms.size() == 2);
    auto first = kc.next_comm(5s);
    REQUIRE(first);
    CHECK(first->msg_type == "comm_open");
    CHECK(first->data == json{{"n", 7}});
    auto second = kc.next_comm(5s);
    REQUIRE(second);
    CHECK(second->msg_type == "comm_close");

    // Client closes: the kernel's on_close runs and the comm is gone from comm_info.
    kc.comm_close(id, {{"reason", "done"}});
    auto after = kc.execute("print('after')", {.timeout = 30s});
    CHECK(after.status == execution_status::ok);
    CHECK_FALSE(kc.comm_info("kx_echo")["comms"].contains(id));
    CHECK_FALSE(kc.next_comm(200ms));
    CHECK(kc.dropped_comms() == 0);
}

TEST_CASE("ipykernel: display_data images are delivered and saved") {
    runtime_dir rt;
    auto km = kernel_manager::start(python_kernel());
    auto r = km.client().execute(
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "%matplotlib inline\nplt.plot([1, 2, 3])\nplt.show()",
        {.timeout = 60s});
    CHECK(r.status == execution_status::ok);
    const outputs::display_data* shown = nullptr;
    for (const auto& o : r.outputs)
        if (auto* d = std::get_if<outputs::display_data>(&o)) shown = d;
    REQUIRE(shown);
    REQUIRE(shown->data.contains("image/png"));
    auto files = save_output_files(shown->data, rt.path() / "out", "plot");
    REQUIRE(files.size() == 1);
    std::ifstream png(files[0], std::ios::binary);
    char magic[8] = {};
    png.read(magic, 8);
    CHECK(std::string(magic + 1, 3) == "PNG");
}

TEST_CASE("ipykernel: a timeout interrupts the cell, keeps partial output, and the next cell works") {
    runtime_dir rt;
    auto km = kernel_manager::start(python_kernel());
    auto& kc = km.client();
    kc.execute("y = 7", {.timeout = 30s});
    auto t0 = std::chrono::steady_clock::now();
    auto r = kc.execute("import time\nprint('before', flush=True)\ntime.sleep(60)", {.timeout = 2s});
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(r.status == execution_status::timeout);
    CHECK_FALSE(r.restarted);
    CHECK(r.stream_text().find("before") != std::string::npos);
    CHECK(took < 10s);
    auto next = kc.execute("y * 6", {.timeout = 30s});
    CHECK(next.status == execution_status::ok);
    CHECK(next.result_text() == std::optional<std::string>("42"));
}

TEST_CASE("test kernel: a cell that ignores SIGINT leads to a restart that the result reports") {
    runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    auto& kc = km.client();
    int old_pid = km.pid();
    auto r = kc.execute("print started\nhang", {.timeout = 1s, .interrupt_grace = 1s});
    CHECK(r.status == execution_status::timeout);
    CHECK(r.restarted);
    CHECK(r.note.find("restarted") != std::string::npos);
    CHECK(r.stream_text().find("started") != std::string::npos);
    CHECK(km.pid() != old_pid);
    CHECK_FALSE(process_exists(old_pid));
    auto next = kc.execute("print alive", {.timeout = 10s});
    CHECK(next.status == execution_status::ok);
    CHECK(next.stream_text() == "alive\n");
}

TEST_CASE("test kernel: kill -9 mid-cell gives kernel_died within 5 s, then the restarter brings it back") {
    runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    std::atomic<int> restarted{0};
    km.on_restarted([&] { ++restarted; });
    auto& kc = km.client();
    int pid = km.pid();
    std::thread killer([pid] {
        std::this_thread::sleep_for(300ms);
        ::kill(pid, SIGKILL);
    });
    auto t0 = std::chrono::steady_clock::now();
    auto r = kc.execute("print partial\nsleep 30000", {.timeout = 60s});
    auto took = std::chrono::steady_clock::now() - t0;
    killer.join();
    CHECK(r.status == execution_status::kernel_died);
    CHECK(r.stream_text() == "partial\n");
    CHECK(took < 5s);
    // The restarter starts a new kernel; the next cell runs on it.
    auto next = kc.execute("print back", {.timeout = 20s});
    CHECK(next.status == execution_status::ok);
    CHECK(next.stream_text() == "back\n");
    CHECK(restarted.load() == 1);
    CHECK(km.pid() != pid);
}

TEST_CASE("test kernel: a kernel that crashes mid-cell is kernel_died, not a hang") {
    runtime_dir rt;
    auto o = test_kernel();
    o.autorestart = false;
    auto km = kernel_manager::start(o);
    std::atomic<int> dead{0};
    km.on_dead([&] { ++dead; });
    auto r = km.client().execute("print going\ncrash", {.timeout = 30s});
    CHECK(r.status == execution_status::kernel_died);
    CHECK(r.stream_text() == "going\n");
    for (int i = 0; i < 100 && dead.load() == 0; ++i) std::this_thread::sleep_for(20ms);
    CHECK(dead.load() == 1);
    // Reaped and not restarted: later cells are kernel_died at once, not at
    // their timeout (after which the kernel used to be restarted anyway).
    for (int i = 0; i < 3; ++i) {
        auto later = km.client().execute("print never", {.timeout = 10s});
        CHECK(later.status == execution_status::kernel_died);
        CHECK(later.elapsed < 2s);
        CHECK_FALSE(later.restarted);
    }
    CHECK_FALSE(km.alive());
}

TEST_CASE("test kernel: a kernel that exits at start fails start-up with its stderr") {
    runtime_dir rt;
    auto o = test_kernel();
    o.env["KERNEX_TEST_KERNEL_EXIT_AT_START"] = "3";
    auto t0 = std::chrono::steady_clock::now();
    try {
        auto km = kernel_manager::start(o);
        FAIL("start should have failed");
    } catch (const kernex::error& e) {
        CHECK(e.code() == errc::launch_failed);
        std::string what = e.what();
        CHECK(what.find("exit code 3") != std::string::npos);
        CHECK(what.find("failing at start on purpose") != std::string::npos);
    }
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    CHECK(rt.files() == 0);
    CHECK(children().empty());
}

TEST_CASE("test kernel: forged, unsigned and replayed messages are dropped and counted; the cell completes") {
    runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    auto& kc = km.client();
    kc.execute("print warm-up", {.timeout = 10s});
    auto r = kc.execute("forge\nprint real", {.timeout = 10s});
    CHECK(r.status == execution_status::ok);
    CHECK(r.stream_text() == "real\n");
    auto rejected = kc.rejected();
    CHECK(rejected[reject_reason::bad_signature] >= 1);
    CHECK(rejected[reject_reason::replayed] >= 1);
    // The unsigned one has an empty signature: a length failure.
    CHECK(rejected[reject_reason::bad_signature_length] >= 1);
}

TEST_CASE("test kernel: interrupt in signal and message modes") {
    runtime_dir rt;
    for (auto name : {"kernex-test", "kernex-test-message"}) {
        auto km = kernel_manager::start(test_kernel(name));
        auto& kc = km.client();
        std::thread interrupter([&km] {
            std::this_thread::sleep_for(300ms);
            km.interrupt();
        });
        auto r = kc.execute("sleep 20000", {.timeout = 15s});
        interrupter.join();
        CHECK(r.status == execution_status::error);
        REQUIRE(r.error());
        CHECK(r.error()->ename == "KeyboardInterrupt");
        CHECK(kc.execute("print ok", {.timeout = 5s}).stream_text() == "ok\n");
    }
}

TEST_CASE("test kernel: restart keeps the manager and gives a fresh state") {
    runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    auto& kc = km.client();
    kc.execute("set a 1", {.timeout = 5s});
    auto ports = km.connection();
    km.restart();
    CHECK(km.connection().shell_port == ports.shell_port);
    CHECK(kc.execute("get a", {.timeout = 5s}).status == execution_status::error);
    km.restart({.now = true, .new_ports = true});
    CHECK(km.connection().shell_port != ports.shell_port);
    CHECK(km.client().execute("print fresh", {.timeout = 5s}).stream_text() == "fresh\n");
}

TEST_CASE("ipykernel: the first cell after a deliberate restart runs (never taken for a kernel replaced under it)") {
    runtime_dir rt;
    auto km = kernel_manager::start(python_kernel());
    auto& kc = km.client();
    for (int i = 0; i < 6; ++i) {
        CAPTURE(i);
        CHECK(kc.execute("x = " + std::to_string(i), {.timeout = 30s}).status == execution_status::ok);
        km.restart();
        auto r = kc.execute("print('x' in dir())", {.timeout = 30s});
        CHECK_MESSAGE(r.status == execution_status::ok, r.note);
        CHECK(r.stream_text() == "False\n");
    }
}

TEST_CASE("test kernel: a cell aborted without running (ipykernel's post-error window) is sent again") {
    runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    auto& kc = km.client();
    // The next two execute_requests are answered "aborted", as ipykernel
    // answers those that reach it just after a failed cell.
    REQUIRE(kc.execute("abort 2", {.timeout = 5s}).status == execution_status::ok);
    auto r = kc.execute("set a 1\nprint ran", {.timeout = 5s});
    CHECK(r.status == execution_status::ok);
    CHECK(r.stream_text() == "ran\n");
    CHECK(kc.execute("get a", {.timeout = 5s}).stream_text() == "1\n");  // it ran once

    // More aborts than retries: reported aborted, with a note, and nothing ran.
    REQUIRE(kc.execute("abort 10", {.timeout = 5s}).status == execution_status::ok);
    r = kc.execute("set a 2", {.timeout = 5s, .aborted_retries = 2});
    CHECK(r.status == execution_status::aborted);
    CHECK(r.note.find("aborted the cell without running it") != std::string::npos);
    // 3 of the 10 were used: the remaining 7 go with aborted_retries = 0 each.
    for (int i = 0; i < 7; ++i) CHECK(kc.execute("set a 3", {.aborted_retries = 0}).status == execution_status::aborted);
    CHECK(kc.execute("get a", {.timeout = 5s}).stream_text() == "1\n");
}

TEST_CASE("connection file: 0600 in the runtime dir, removed at shutdown") {
    runtime_dir rt;
    fs::path file;
    {
        auto km = kernel_manager::start(test_kernel());
        file = km.connection_file();
        CHECK(file.parent_path() == rt.path());
        CHECK(file.filename().string().rfind("kernel-", 0) == 0);
        auto perms = fs::status(file).permissions();
        CHECK((perms & (fs::perms::group_all | fs::perms::others_all)) == fs::perms::none);
        // Another client connects from the file (no manager) and sees the state.
        km.client().execute("set shared yes", {.timeout = 5s});
        auto other = kernel_client::from_connection_file(file);
        other.wait_for_ready(10s);
        CHECK(other.execute("get shared", {.timeout = 5s}).stream_text() == "yes\n");
    }
    CHECK_FALSE(fs::exists(file));
    CHECK(rt.files() == 0);
}

TEST_CASE("a client from a connection file detects a dead kernel by heartbeat") {
    runtime_dir rt;
    auto o = test_kernel();
    o.autorestart = false;
    auto km = kernel_manager::start(o);
    auto other = kernel_client::from_connection_file(km.connection_file(), {.heartbeat_period = 500ms});
    other.wait_for_ready(10s);
    int pid = km.pid();
    std::thread killer([pid] {
        std::this_thread::sleep_for(800ms);
        ::kill(pid, SIGKILL);
    });
    auto t0 = std::chrono::steady_clock::now();
    auto r = other.execute("sleep 30000", {.timeout = 30s});
    killer.join();
    CHECK(r.status == execution_status::kernel_died);
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

TEST_CASE("100 start/shutdown cycles leave no process, zombie, open fd or connection file") {
    runtime_dir rt;
    // Warm up once: the shared ZeroMQ context opens its own fds the first time.
    kernel_manager::start(test_kernel()).shutdown();
    std::this_thread::sleep_for(100ms);
    auto fds_before = open_fds();
    for (int i = 0; i < 100; ++i) {
        auto km = kernel_manager::start(test_kernel());
        if (i % 2) km.client().execute("print x", {.timeout = 5s});
        if (i % 3 == 0) km.shutdown(true);
    }
    CHECK(children().empty());
    CHECK(rt.files() == 0);
    // ZeroMQ closes a socket's fd in its reaper thread, a moment after
    // zmq_close: give it that moment, then no fd may have been gained.
    for (int i = 0; i < 100 && open_fds() > fds_before; ++i) std::this_thread::sleep_for(10ms);
    CHECK(open_fds() <= fds_before);
}

TEST_CASE("multi_kernel_manager: kernels from several threads at once") {
    runtime_dir rt;
    multi_kernel_manager mkm;
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&, t] {
            try {
                auto id = mkm.start(test_kernel());
                auto km = mkm.get(id);
                for (int i = 0; i < 20; ++i) {
                    auto r = km->client().execute("set k " + std::to_string(t) + "\nget k", {.timeout = 10s});
                    if (r.stream_text() != std::to_string(t) + "\n") ++failures;
                }
            } catch (...) {
                ++failures;
            }
        });
    for (auto& th : threads) th.join();
    CHECK(failures.load() == 0);
    auto ids = mkm.list();
    CHECK(ids.size() == 8);
    mkm.restart(ids[0]);
    mkm.shutdown(ids[1]);
    CHECK(mkm.list().size() == 7);
    CHECK_THROWS_AS(mkm.get(ids[1]), kernex::error);
    mkm.shutdown_all();
    CHECK(mkm.list().empty());
    CHECK(children().empty());
}

TEST_CASE("a port taken by someone else: the kernel fails to bind and is retried on new ports") {
    runtime_dir rt;
    // Someone else listens on what will be the shell port.
    int squatter = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(squatter >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(squatter, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(squatter, 1) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(squatter, reinterpret_cast<sockaddr*>(&addr), &len);
    auto taken = ntohs(addr.sin_port);

    auto o = test_kernel();
    o.ports = allocate_ports({});
    o.ports->shell_port = taken;
    auto km = kernel_manager::start(o);
    CHECK(km.connection().shell_port != taken);
    CHECK(km.log_tail().find("Address already in use") != std::string::npos);
    CHECK(km.client().execute("print moved", {.timeout = 5s}).stream_text() == "moved\n");
    ::close(squatter);
}

TEST_CASE("test kernel: a frame above max_message_bytes ends the cell after idle_wait; iopub is remade") {
    runtime_dir rt;
    auto o = test_kernel();
    o.codec.max_message_bytes = 1 << 20;
    auto km = kernel_manager::start(o);
    auto& kc = km.client();
    // ZeroMQ drops the iopub connection at the frame's size, and the idle with it.
    auto r = kc.execute("print before\nbig 4m\nprint after", {.timeout = 30s, .idle_wait = 500ms});
    CHECK(r.status == execution_status::ok);
    CHECK(r.stream_text() == "before\n");
    CHECK(r.outputs_lost);
    CHECK(r.note.find("idle status did not arrive") != std::string::npos);
    CHECK(r.elapsed < 5s);
    for (int i = 0; i < 3; ++i) {
        auto next = kc.execute("print next " + std::to_string(i), {.timeout = 10s});
        CHECK(next.status == execution_status::ok);
        CHECK(next.stream_text() == "next " + std::to_string(i) + "\n");
        CHECK(next.note.empty());
    }
}

TEST_CASE("zmq transport: each iopub connection that comes up is counted (wait_for_ready's cue to ask again)") {
    // wait_for_ready proves the iopub subscription by the status its
    // kernel_info request causes; a status published before the
    // subscription reached the kernel is lost. The subscription travels as
    // soon as the connection is up, which iopub_connections() tells.
    runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    auto t = make_zmq_transport(km.connection(), new_id());
    const auto reaches = [&](unsigned long n) {
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (t->iopub_connections() < n && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(1ms);
        return t->iopub_connections();
    };
    CHECK(reaches(1) == 1);
    t->reconnect_iopub();
    CHECK(reaches(2) == 2);
    // The new connection carries the subscription: a request's busy status arrives on iopub.
    incoming in;
    bool status_seen = false;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!status_seen && std::chrono::steady_clock::now() < deadline) {
        t->send(channel::shell, make_request("kernel_info_request", json::object(), new_id()));
        const auto until = std::chrono::steady_clock::now() + 200ms;
        while (!status_seen && t->receive(until, in) == receive_status::message)
            status_seen = in.channel == channel::iopub && in.message.msg_type() == "status";
    }
    CHECK(status_seen);
}

TEST_CASE("test kernel: output kept per cell is bounded; the handler still sees everything") {
    runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    std::size_t seen = 0;
    auto r = km.client().execute("flood 2000", {.timeout = 30s,
                                                .on_output = [&](const output&) { ++seen; },
                                                .max_output_bytes = 1000});
    CHECK(r.status == execution_status::ok);
    CHECK(seen == 2000);
    CHECK(r.dropped_output_bytes > 10000);
    // What was kept, then a notice saying how much was not.
    REQUIRE(r.outputs.size() >= 2);
    auto& notice = std::get<outputs::stream>(r.outputs.back());
    CHECK(notice.name == "stderr");
    CHECK(notice.text == "[kernex: " + std::to_string(r.dropped_output_bytes) +
                             " bytes of output dropped: the cell's outputs are kept up to max_output_bytes (1000)]\n");
    CHECK(r.stream_text().size() - notice.text.size() <= 1000);
}
