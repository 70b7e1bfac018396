// remote_kernel: a kernel on a Jupyter Server with kernel_manager's
// lifetime. Its kernel_control for the client: interrupt and restart are
// REST calls (thread-safe), there is no local process to watch (deaths come
// from the websocket transport), and before each request the transport
// settles what already arrived, so a server-side restart that happened
// while idle renews the generation (the client proves the new kernel ready)
// instead of failing the next cell.
#include "kernex/remote_kernel.hpp"

#include <atomic>
#include <mutex>
#include <vector>

#include "gateway/websocket_transport.hpp"
#include "kernex/error.hpp"

namespace kernex {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

std::chrono::milliseconds left(steady::time_point deadline) {
    return std::max(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()), 1ms);
}

}  // namespace

struct remote_kernel::impl final : kernel_control {
    explicit impl(gateway_options options) : gc(std::move(options)) {}

    gateway_client gc;
    std::string id;
    kernelspec spec;
    bool owned = true;
    std::chrono::milliseconds ready_timeout{60'000};
    std::optional<kernel_client> client;
    gateway_detail::ws_transport* ws = nullptr;  // owned by client
    std::atomic<std::uint64_t> gen{1};
    std::atomic<int> restarts{0};
    std::mutex mutex;  // guards the callbacks
    std::vector<std::function<void()>> restarted_callbacks;
    std::vector<std::function<void()>> dead_callbacks;
    bool closed = false;

    // --- kernel_control -------------------------------------------------
    void interrupt() override { gc.interrupt_kernel(id); }
    void restart_kernel() override {
        gc.restart_kernel(id, ready_timeout);
        gen.fetch_add(1);
    }
    int watch_fd() override { return -1; }
    std::uint64_t generation() override { return gen.load(); }
    void before_request() override {
        if (ws) ws->settle();
    }

    // --- events from the transport (on the client's thread) --------------
    void fire(std::vector<std::function<void()>> impl::*which) {
        std::vector<std::function<void()>> to_call;
        {
            std::lock_guard lock(mutex);
            to_call = this->*which;
        }
        for (auto& cb : to_call) cb();
    }

    // Opens the websocket and waits until the kernel is ready. Throws
    // timeout / launch_failed with the kernel named, or the gateway's errors.
    void open(steady::time_point deadline) {
        auto session = new_id();
        auto t = gc.connect(id, session, left(deadline));
        ws = dynamic_cast<gateway_detail::ws_transport*>(t.get());
        if (ws)
            ws->set_events({[this] {
                                restarts.fetch_add(1);
                                gen.fetch_add(1);
                                fire(&impl::restarted_callbacks);
                            },
                            [this] { fire(&impl::dead_callbacks); }});
        client.emplace(std::move(t), session);
        client->set_control(this);
        try {
            client->wait_for_ready(left(deadline));
        } catch (const error& e) {
            std::string what = "kernel '" + spec.name + "' (" + id + ") on " + gc.display_url();
            if (e.code() == errc::kernel_died)
                throw error(errc::launch_failed, what + " died before it was ready" +
                                                     (ws && !ws->dead_reason().empty() ? ": " + ws->dead_reason() : ""));
            if (e.code() == errc::timeout) throw error(errc::timeout, what + " was not ready in time: " + e.what());
            throw;
        }
    }

    void shutdown() noexcept {
        if (closed) return;
        closed = true;
        ws = nullptr;
        client.reset();  // closes the websocket
        if (!owned || id.empty()) return;
        try {
            gc.delete_kernel(id);
        } catch (...) {
            // Already gone, or the server is unreachable: nothing more to do from here.
        }
    }
};

remote_kernel::remote_kernel(std::unique_ptr<impl> p) : m_impl(std::move(p)) {}
remote_kernel::remote_kernel(remote_kernel&&) noexcept = default;
remote_kernel& remote_kernel::operator=(remote_kernel&& other) noexcept {
    if (this != &other) {
        if (m_impl) m_impl->shutdown();
        m_impl = std::move(other.m_impl);
    }
    return *this;
}
remote_kernel::~remote_kernel() {
    if (m_impl) m_impl->shutdown();
}

remote_kernel remote_kernel::start(gateway_options gateway, remote_kernel_options options) {
    auto deadline = steady::now() + options.ready_timeout;
    auto p = std::make_unique<impl>(std::move(gateway));
    p->ready_timeout = options.ready_timeout;
    p->spec = p->gc.kernelspec_named(options.kernel_name);
    p->id = p->gc.start_kernel(options.kernel_name, options.env, left(deadline)).id;
    p->owned = true;
    try {
        p->open(deadline);
    } catch (...) {
        p->shutdown();  // deletes the kernel that never became usable
        throw;
    }
    return remote_kernel(std::move(p));
}

remote_kernel remote_kernel::attach(gateway_options gateway, const std::string& kernel_id, bool owned,
                                    std::chrono::milliseconds ready_timeout) {
    auto deadline = steady::now() + ready_timeout;
    auto p = std::make_unique<impl>(std::move(gateway));
    p->ready_timeout = ready_timeout;
    auto model = p->gc.kernel(kernel_id);
    p->id = model.id.empty() ? kernel_id : model.id;
    p->owned = owned;
    try {
        p->spec = p->gc.kernelspec_named(model.name);
    } catch (const error&) {
        p->spec.name = model.name;  // a spec the server no longer lists: the kernel still runs
    }
    try {
        p->open(deadline);
    } catch (...) {
        p->shutdown();
        throw;
    }
    return remote_kernel(std::move(p));
}

kernel_client& remote_kernel::client() {
    if (!m_impl || !m_impl->client) throw error(errc::invalid_argument, "the remote kernel has been shut down");
    return *m_impl->client;
}

const std::string& remote_kernel::id() const noexcept { return m_impl->id; }
const kernelspec& remote_kernel::spec() const noexcept { return m_impl->spec; }
const gateway_client& remote_kernel::gateway() const noexcept { return m_impl->gc; }

bool remote_kernel::alive() noexcept {
    if (!m_impl || m_impl->closed) return false;
    try {
        return m_impl->gc.kernel(m_impl->id).execution_state != "dead";
    } catch (...) {
        return false;
    }
}

void remote_kernel::interrupt() { m_impl->interrupt(); }

void remote_kernel::restart() {
    m_impl->restart_kernel();
    client().wait_for_ready(m_impl->ready_timeout);
}

void remote_kernel::shutdown() noexcept {
    if (m_impl) m_impl->shutdown();
}

void remote_kernel::on_restarted(std::function<void()> callback) {
    std::lock_guard lock(m_impl->mutex);
    m_impl->restarted_callbacks.push_back(std::move(callback));
}

void remote_kernel::on_dead(std::function<void()> callback) {
    std::lock_guard lock(m_impl->mutex);
    m_impl->dead_callbacks.push_back(std::move(callback));
}

int remote_kernel::restart_count() const noexcept { return m_impl->restarts.load(); }

}  // namespace kernex
