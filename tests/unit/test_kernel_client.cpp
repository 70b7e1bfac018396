// kernel_client against a scripted kernel behind a transport of the test's
// own (no process, no socket): what it proves before sending a cell to a
// kernel that was just replaced.
#include <doctest/doctest.h>

#include <deque>
#include <thread>

#include "kernex/kernel_client.hpp"
#include "kernex/message.hpp"
#include "kernex/transport.hpp"

using namespace std::chrono_literals;
using kernex::channel;
using kernex::incoming;
using kernex::json;
using kernex::message;

namespace {

// A kernel process (its own session id) and what it has sent. After a
// restart, the old process's last iopub messages (ipykernel broadcasts its
// shutdown_reply, then idle) are still on their way, and the new process's
// iopub messages are lost until our subscription reaches it (ZeroMQ's slow
// joiner; through a Jupyter Server, the server's own iopub socket): here,
// from the third request it answers.
struct scripted_kernel {
    std::uint64_t generation = 1;
    std::string session = kernex::new_id();
    bool subscribed = true;
    int requests_until_subscribed = 0;
    std::deque<incoming> on_the_wire;

    void restart() {
        message old = kernex::make_request("shutdown_reply", {{"status", "ok"}, {"restart", true}}, session, "kernel");
        on_the_wire.push_back({channel::iopub, old});
        message idle = kernex::make_request("status", {{"execution_state", "idle"}}, session, "kernel");
        on_the_wire.push_back({channel::iopub, idle});
        session = kernex::new_id();
        ++generation;
        subscribed = false;
        requests_until_subscribed = 3;
    }

    void answer(channel ch, const message& request) {
        if (!subscribed && --requests_until_subscribed <= 0) subscribed = true;
        const auto send = [&](channel c, const std::string& type, json content) {
            if (c == channel::iopub && !subscribed) return;  // lost
            message m = kernex::make_reply(request, type, std::move(content), "kernel");
            m.header.session = session;
            on_the_wire.push_back({c, std::move(m)});
        };
        send(channel::iopub, "status", {{"execution_state", "busy"}});
        if (request.msg_type() == "kernel_info_request") {
            send(ch, "kernel_info_reply",
                 {{"status", "ok"}, {"protocol_version", "5.3"}, {"language_info", {{"name", "python"}}}});
        } else if (request.msg_type() == "execute_request") {
            send(channel::iopub, "stream", {{"name", "stdout"}, {"text", "hello\n"}});
            send(ch, "execute_reply", {{"status", "ok"}, {"execution_count", 1}});
        }
        send(channel::iopub, "status", {{"execution_state", "idle"}});
    }
};

class scripted_transport final : public kernex::transport {
public:
    explicit scripted_transport(scripted_kernel& k) : m_kernel(k) {}
    void send(channel ch, const message& msg) override { m_kernel.answer(ch, msg); }
    kernex::receive_status receive(std::chrono::steady_clock::time_point deadline, incoming& out) override {
        if (m_kernel.on_the_wire.empty()) {
            // Nothing more comes while we wait (the kernel answers on send).
            std::this_thread::sleep_until(std::min(deadline, std::chrono::steady_clock::now() + 50ms));
            return kernex::receive_status::timeout;
        }
        out = std::move(m_kernel.on_the_wire.front());
        m_kernel.on_the_wire.pop_front();
        return kernex::receive_status::message;
    }
    void watch_death_fd(int) override {}
    kernex::reject_counters rejected() const override { return {}; }

private:
    scripted_kernel& m_kernel;
};

struct scripted_control final : kernex::kernel_control {
    explicit scripted_control(scripted_kernel& k) : kernel(k) {}
    void interrupt() override {}
    void restart_kernel() override { kernel.restart(); }
    int watch_fd() override { return -1; }
    std::uint64_t generation() override { return kernel.generation; }
    scripted_kernel& kernel;
};

std::string stream_text(const kernex::execution& e) {
    std::string out;
    for (const auto& o : e.outputs)
        if (const auto* s = std::get_if<kernex::outputs::stream>(&o)) out += s->text;
    return out;
}

}  // namespace

TEST_CASE("after a restart, the old process's late iopub messages do not prove the new one subscribed") {
    scripted_kernel kernel;
    scripted_control control(kernel);
    kernex::kernel_client kc(std::make_unique<scripted_transport>(kernel), kernex::new_id());
    kc.set_control(&control);
    kc.wait_for_ready(5s);
    auto r = kc.execute("print('hello')", {.timeout = 10s});
    REQUIRE(r.status == kernex::execution_status::ok);
    CHECK(stream_text(r) == "hello\n");

    control.restart_kernel();
    r = kc.execute("print('hello')", {.timeout = 10s});
    INFO("note: ", r.note);
    CHECK(r.status == kernex::execution_status::ok);
    // Sent only once the new process's own iopub message arrived: its output is all there.
    CHECK(stream_text(r) == "hello\n");
    CHECK_FALSE(r.outputs_lost);
}
