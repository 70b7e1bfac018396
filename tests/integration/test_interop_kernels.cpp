// kernel_manager and kernel_client against kernels nobody here wrote, beyond
// ipykernel (test_kernel_manager.cpp) and IRkernel (test_interop.py):
// Debian's xeus-python 0.14 (`xpython`, a xeus kernel like kernex-bash but
// not ours) and Debian's octave_kernel (its spec's argv[0] is `python`).
// Issue 18; docs/kernels.md's compatibility table names these cases.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>

#include <doctest/doctest.h>

#include "kernex/error.hpp"
#include "kernex/kernel_manager.hpp"
#include "kernex/output_files.hpp"

#include "../helpers/test_support.hpp"

using namespace std::chrono_literals;
using namespace kernex;
namespace fs = std::filesystem;

namespace {

using test::runtime_dir;

// An environment variable set (or unset) for a scope.
class scoped_env {
public:
    scoped_env(std::string name, const char* value) : m_name(std::move(name)) {
        if (const char* old = std::getenv(m_name.c_str())) m_old = old;
        value ? ::setenv(m_name.c_str(), value, 1) : ::unsetenv(m_name.c_str());
    }
    ~scoped_env() { m_old ? ::setenv(m_name.c_str(), m_old->c_str(), 1) : ::unsetenv(m_name.c_str()); }
    scoped_env(const scoped_env&) = delete;
    scoped_env& operator=(const scoped_env&) = delete;

private:
    std::string m_name;
    std::optional<std::string> m_old;
};

kernel_options named_kernel(const std::string& name) {
    REQUIRE_MESSAGE(fs::exists("/usr/share/jupyter/kernels/" + name + "/kernel.json"),
                    "kernelspec '" << name << "' is missing: scripts/setup.sh installs it");
    kernel_options o;
    o.kernel_name = name;
    o.ready_timeout = 60s;
    return o;
}

// The cell's streams as "name:text", consecutive pieces of one stream joined
// (xeus-python sends print's parts as separate messages: "42", "\n").
std::vector<std::string> joined_streams(const execution& r) {
    std::vector<std::string> out;
    std::string last;
    for (const auto& o : r.outputs) {
        if (auto* s = std::get_if<outputs::stream>(&o)) {
            if (!out.empty() && last == s->name) {
                out.back() += s->text;
            } else {
                out.push_back(s->name + ":" + s->text);
                last = s->name;
            }
        }
    }
    return out;
}

}  // namespace

TEST_CASE("xeus-python: state, streams in order, errors, complete, inspect, kernel_info") {
    runtime_dir rt;
    auto km = kernel_manager::start(named_kernel("xpython"));
    auto& kc = km.client();
    auto r1 = kc.execute("x = 41", {.timeout = 30s});
    CHECK(r1.status == execution_status::ok);
    auto r2 = kc.execute("x + 1", {.timeout = 30s});
    CHECK(r2.status == execution_status::ok);
    CHECK(r2.result_text() == std::optional<std::string>("42"));
    CHECK(r2.execution_count == r1.execution_count + 1);

    auto r3 = kc.execute(
        "import sys\nprint('out1')\nprint('err1', file=sys.stderr)\nprint('out2')\nprint('err2', file=sys.stderr)",
        {.timeout = 30s});
    CHECK(r3.status == execution_status::ok);
    CHECK(joined_streams(r3) == std::vector<std::string>{"stdout:out1\n", "stderr:err1\n", "stdout:out2\n",
                                                         "stderr:err2\n"});

    auto r4 = kc.execute("1/0", {.timeout = 30s});
    CHECK(r4.status == execution_status::error);
    REQUIRE(r4.error());
    // xeus-python 0.14 names the class as str(type) does; the value and
    // traceback are the usual ones.
    CHECK(r4.error()->ename.find("ZeroDivisionError") != std::string::npos);
    CHECK(r4.error()->evalue == "division by zero");
    REQUIRE(!r4.error()->traceback.empty());
    CHECK(strip_ansi(r4.error()->traceback.back()).find("division by zero") != std::string::npos);
    // An error does not end the session: x is still there.
    auto r5 = kc.execute("x", {.timeout = 30s});
    CHECK(r5.result_text() == std::optional<std::string>("41"));

    CHECK(kc.kernel_info()["implementation"] == "xeus-python");
    auto comp = kc.complete("import o", 8);
    CHECK(comp["status"] == "ok");
    CHECK(comp["cursor_start"] == 7);
    bool has_os = false;
    for (const auto& m : comp["matches"]) has_os = has_os || m == "os";
    CHECK(has_os);
    auto insp = kc.inspect("len", 3);
    CHECK(insp["status"] == "ok");
    CHECK(insp["found"] == true);
    CHECK(insp["data"]["text/plain"].get<std::string>().find("Return the number of items") != std::string::npos);
    CHECK(kc.is_complete("for i in range(3):")["status"] == "incomplete");
}

TEST_CASE("xeus-python: comms from the client both ways, and a cell's comm messages kept") {
    runtime_dir rt;
    auto km = kernel_manager::start(named_kernel("xpython"));
    auto& kc = km.client();
    // A target that answers what it is sent, as a widget model does
    // (xeus-python's comm API: on_msg takes the callback). Its answer's
    // metadata is None, which xeus-python sends as `null`: jupyter_client
    // takes that, and so does kernex (an empty metadata), not a rejected message.
    auto reg = kc.execute(
        "the_comm = None\n"
        "def kx_target(comm, open_msg):\n"
        "    global the_comm\n"
        "    the_comm = comm\n"
        "    def got(msg):\n"
        "        comm.send({'echo': msg['content']['data'],\n"
        "                   'buffers': [bytes(b).decode() for b in msg['buffers']]}, None, [b'kx-bin'])\n"
        "    comm.on_msg(got)\n"
        "    comm.send({'opened_with': open_msg['content']['data']})\n"
        "get_ipython().kernel.comm_manager.register_target('kx_echo', kx_target)",
        {.timeout = 30s});
    REQUIRE(reg.status == execution_status::ok);

    const auto id = kc.comm_open("kx_echo", {{"hello", 1}});
    auto opened = kc.next_comm(20s);
    REQUIRE(opened);
    CHECK(opened->msg_type == "comm_msg");
    CHECK(opened->comm_id == id);
    CHECK(opened->data == json{{"opened_with", {{"hello", 1}}}});
    auto info = kc.comm_info("kx_echo");
    REQUIRE(info["comms"].contains(id));

    const auto sent = kc.comm_msg(id, {{"x", 2}}, json::object(), {"raw-bytes"});
    auto echoed = kc.next_comm(20s);
    REQUIRE(echoed);
    CHECK(echoed->parent_msg_id == sent);
    CHECK(echoed->data == json{{"echo", {{"x", 2}}}, {"buffers", {"raw-bytes"}}});
    REQUIRE(echoed->buffers.size() == 1);
    CHECK(echoed->buffers[0] == "kx-bin");

    // The kernel sends on the comm from a cell: the cell's own comm message.
    std::vector<comm_message> during;
    auto r = kc.execute("the_comm.send({'from_cell': 1})\nprint('sent')",
                        {.timeout = 30s, .on_comm = [&](const comm_message& c) { during.push_back(c); }});
    CHECK(r.status == execution_status::ok);
    REQUIRE(r.comms.size() == 1);
    CHECK(r.comms[0].msg_type == "comm_msg");
    CHECK(r.comms[0].comm_id == id);
    CHECK(r.comms[0].data == json{{"from_cell", 1}});
    CHECK(during.size() == 1);
    CHECK(r.stream_text() == "sent\n");

    kc.comm_close(id, {{"reason", "done"}});
    auto after = kc.execute("print('after')", {.timeout = 30s});
    CHECK(after.status == execution_status::ok);
    CHECK_FALSE(kc.comm_info("kx_echo")["comms"].contains(id));
    CHECK(kc.dropped_comms() == 0);
    // Not tested: a comm the kernel opens (ipykernel.comm.Comm(...) in a
    // cell) crashes xeus-python 0.14.3 with SIGSEGV in
    // xcomm_manager::register_comm, under jupyter_client too.
}

TEST_CASE("xeus-python: SIGINT ends xeus-python 0.14 (as under jupyter_client): a timeout is kernel_died, "
          "state lost, and the next cell runs on a restarted kernel") {
    runtime_dir rt;
    auto km = kernel_manager::start(named_kernel("xpython"));
    auto& kc = km.client();
    const int pid = km.pid();
    REQUIRE(kc.execute("y = 7", {.timeout = 30s}).status == execution_status::ok);
    auto r = kc.execute("import time\nprint('before', flush=True)\ntime.sleep(60)", {.timeout = 2s});
    // Said as it is: the kernel died of the interrupt, not "timeout" with a
    // kernel that would still have y.
    CHECK(r.status == execution_status::kernel_died);
    CHECK(r.note.find("state") != std::string::npos);
    CHECK(r.stream_text().find("before") != std::string::npos);
    CHECK(::kill(pid, 0) != 0);
    auto next = kc.execute("'y' in globals()", {.timeout = 60s});
    CHECK(next.status == execution_status::ok);
    CHECK(next.result_text() == std::optional<std::string>("False"));
    CHECK(km.pid() != pid);
}

TEST_CASE("octave_kernel: Debian's spec (argv[0] `python`) starts with no `python` on PATH; off, it does not") {
    runtime_dir rt;
    // A PATH whose `python` is not the one that has octave_kernel (Debian 12
    // has no /usr/bin/python at all; a user's pyenv or venv has one without it).
    test::temp_dir bin;
    test::write_file(bin / "python", "#!/bin/sh\necho 'not the python that owns the kernelspec' >&2\nexit 3\n",
                     true);
    scoped_env path("PATH", (bin.path().string() + ":/usr/bin:/bin").c_str());
    {
        auto km = kernel_manager::start(named_kernel("octave"));
        auto& kc = km.client();
        auto r1 = kc.execute("x = 6 * 7;", {.timeout = 60s});
        CHECK(r1.status == execution_status::ok);
        auto r2 = kc.execute("disp(x)", {.timeout = 60s});
        CHECK(r2.status == execution_status::ok);
        // octave_kernel (through its pty) wraps output in bracketed-paste
        // escapes: the same under jupyter_client.
        CHECK(strip_ansi(r2.stream_text()).find("42") != std::string::npos);
        CHECK(kc.kernel_info()["language_info"]["name"] == "octave");
    }
    // KERNEX_KERNELSPEC_PYTHON=off leaves argv[0] to PATH: the wrong python.
    scoped_env off("KERNEX_KERNELSPEC_PYTHON", "off");
    auto o = named_kernel("octave");
    o.ready_timeout = 30s;
    try {
        auto km = kernel_manager::start(o);
        FAIL("the kernel started with PATH's python");
    } catch (const error& e) {
        CHECK(std::string(e.what()).find("not the python that owns the kernelspec") != std::string::npos);
    }
}
