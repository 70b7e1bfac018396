// kernel_manager: launching a kernel from its kernelspec, waiting until it is
// ready, interrupting, restarting, watching for its death and shutting it
// down without leaving anything behind.
//
// Where the process runs is the provisioner's business (provisioner.hpp):
// a local child, or a container.
//
// Threads: the user's thread owns the kernel_client (and its sockets). The
// restarter thread only watches the process (the provisioner's exit fd,
// dup'ed for itself) and respawns it; it never touches the client. The client notices a new kernel
// process through generation() and proves its iopub subscription again
// before its next request. The restarter also listens on iopub with a
// socket of its own: a kernel that exits after a client's shutdown_request
// broadcasts its shutdown_reply there first (ipykernel does), and that exit
// is what the client asked for, not a death to restart from.
#include "kernex/kernel_manager.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "client/zmq_context.hpp"
#include "kernex/error.hpp"
#include "kernex/remote_kernel.hpp"
#include "manager/provisioner.hpp"

namespace kernex {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

bool looks_like_port_taken(const std::string& log) {
    return log.find("Address already in use") != std::string::npos || log.find("EADDRINUSE") != std::string::npos;
}

void remove_quietly(const std::filesystem::path& p) noexcept {
    std::error_code ec;
    if (!p.empty()) std::filesystem::remove(p, ec);
}

}  // namespace

struct kernel_manager::impl final : kernel_control {
    kernel_options options;
    kernelspec spec;
    std::string id;
    connection_info conn;
    std::filesystem::path conn_file;
    std::filesystem::path log_file;
    std::optional<kernel_client> client;

    // Guards proc, expected_exit, closing and the callbacks. proc is null
    // once shut down.
    mutable std::mutex mutex;
    std::unique_ptr<detail::provisioner> proc;
    std::atomic<std::uint64_t> gen{0};
    bool expected_exit = false;   // a stop we asked for: not a death to restart from
    bool closing = false;
    std::atomic<int> restarts{0};
    bool gave_up = false;         // died and will not be restarted
    std::condition_variable restart_cv;
    steady::time_point launched_at{};
    std::vector<std::function<void()>> restarted_callbacks;
    std::vector<std::function<void()>> dead_callbacks;
    std::vector<std::function<void(bool)>> client_shutdown_callbacks;

    int wake_fd = -1;  // eventfd: wakes the restarter (new process, or stop)
    std::jthread restarter;

    // A kernel on a Jupyter Server (options.gateway): the public methods
    // delegate to it, and nothing local is launched.
    std::optional<remote_kernel> remote;

    ~impl() override {
        stop_restarter();
        if (wake_fd >= 0) ::close(wake_fd);
    }

    // --- kernel_control, for the client ---------------------------------
    void interrupt() override {
        if (spec.interrupt_mode == interrupt_mode::message) {
            // Through a client of its own: this may be called from any
            // thread, while the user's client is busy in execute().
            auto session = new_id();
            kernel_client(make_zmq_transport(conn, session, {}), session).interrupt_request();
            return;
        }
        std::lock_guard lock(mutex);
        if (!proc || !proc->signal(SIGINT))
            throw error(errc::kernel_died, "cannot interrupt kernel " + id + ": its process is gone");
    }

    void restart_kernel() override { restart({.now = true, .new_ports = false}); }

    int watch_fd() override {
        std::lock_guard lock(mutex);
        if (proc && proc->exit_fd() >= 0) return ::fcntl(proc->exit_fd(), F_DUPFD_CLOEXEC, 0);
        // Dead for good and reaped: readable at once, so a request ends
        // kernel_died instead of waiting for its deadline.
        return gave_up ? ::eventfd(1, EFD_CLOEXEC) : -1;
    }

    std::uint64_t generation() override { return gen.load(); }

    // A request right after the kernel died should go to the restarted
    // kernel, not fail against the dead one: wait (bounded) for the
    // restarter's decision when a restart is coming.
    void before_request() override {
        std::unique_lock lock(mutex);
        if (!proc || proc->exit_fd() < 0 || closing || expected_exit || !options.autorestart) return;
        pollfd p{proc->exit_fd(), POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) return;  // alive
        auto g = gen.load();
        restart_cv.wait_for(lock, 30s, [&] { return gen.load() != g || gave_up || closing; });
    }

    // --- launching -------------------------------------------------------
    // Spawns the kernel process (caller holds no lock: done before the
    // restarter exists, or with mutex held by the caller).
    void spawn_locked() {
        detail::launch_request request;
        request.argv = spec.render_argv(conn_file);
        request.cwd = options.cwd;
        request.env = spec.env;
        for (const auto& [k, v] : options.env) request.env[k] = v;
        request.log_file = log_file;
        request.conn_file = conn_file;
        request.inherit_env = options.inherit_env;
        request.conn = conn;
        proc->launch(request);
        launched_at = steady::now();
        gen.fetch_add(1);
        notify_restarter();
    }

    void write_connection() {
        conn.kernel_name = spec.name;
        write_connection_file(conn_file, proc->kernel_view(conn));
    }

    void make_client() {
        // Assigned in place, so references to the client stay valid across
        // a restart on new ports.
        auto session = new_id();
        zmq_transport_options limits{.codec = options.codec, .iopub_queue_messages = options.iopub_queue_messages};
        kernel_client fresh(make_zmq_transport(conn, session, limits), session);
        if (client)
            *client = std::move(fresh);
        else
            client.emplace(std::move(fresh));
        client->set_control(this);
    }

    // Launches and waits for ready, retrying with new ports when the kernel
    // died because a port was taken. Throws like kernel_manager::start.
    void launch() {
        auto deadline = steady::now() + options.ready_timeout;
        for (int attempt = 0;; ++attempt) {
            {
                std::lock_guard lock(mutex);
                expected_exit = false;
                spawn_locked();
            }
            try {
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
                client->wait_for_ready(std::max(left, 1ms));
                return;
            } catch (const error& e) {
                std::string status, log;
                {
                    std::lock_guard lock(mutex);
                    expected_exit = true;
                    bool exited = e.code() == errc::kernel_died;
                    proc->stop(exited ? 0ms : options.terminate_wait);
                    status = proc->exit_text();
                    log = proc->log_tail(2000);
                }
                if (e.code() == errc::kernel_died && looks_like_port_taken(log) && attempt < options.port_retries) {
                    new_ports();
                    write_connection();
                    make_client();
                    continue;
                }
                std::string what = e.code() == errc::kernel_died
                                       ? "kernel '" + spec.name + "' exited before it was ready" +
                                             (status.empty() ? "" : " (" + status + ")")
                                       : "kernel '" + spec.name + "' was not ready in time: " + e.what();
                if (!log.empty()) what += "\n--- its output (last lines) ---\n" + log;
                cleanup_files();
                throw error(e.code() == errc::kernel_died ? errc::launch_failed : errc::timeout, what);
            }
        }
    }

    // Fresh ports; under the mutex, as the restarter reads conn.
    void new_ports() {
        auto fresh = allocate_ports(conn);
        std::lock_guard lock(mutex);
        conn = std::move(fresh);
    }

    void cleanup_files() noexcept {
        remove_quietly(conn_file);
        remove_quietly(log_file);
        if (conn.transport == "ipc")
            for (auto port : {conn.shell_port, conn.iopub_port, conn.stdin_port, conn.control_port, conn.hb_port})
                remove_quietly(conn.ip + "-" + std::to_string(port));
    }

    // --- restarter -------------------------------------------------------
    void notify_restarter() noexcept {
        std::uint64_t one = 1;
        if (wake_fd >= 0) [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof one);
    }

    void start_restarter() {
        wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake_fd < 0) throw error(errc::io_error, "eventfd failed");
        restarter = std::jthread([this](std::stop_token st) { watch(st); });
    }

    void stop_restarter() noexcept {
        if (!restarter.joinable()) return;
        restarter.request_stop();
        notify_restarter();
        restarter.join();
    }

    // Whether the process behind exit fd (a pidfd; for a local kernel its
    // reaper, which exits with the kernel's status or dies of its signal)
    // exited with status 0, as a kernel does after a shutdown_request;
    // nullopt when that cannot be told (no pidfd: a container's kernel).
    static std::optional<bool> exited_cleanly(int fd) noexcept {
        siginfo_t info{};
        constexpr auto p_pidfd = static_cast<idtype_t>(3);  // P_PIDFD (Linux 5.4)
        if (::waitid(p_pidfd, static_cast<id_t>(fd), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0)
            return std::nullopt;
        return info.si_code == CLD_EXITED && info.si_status == 0;
    }

    // What the restarter hears on iopub: whether the current kernel said it
    // is shutting down at a client's request (and whether to restart).
    struct shutdown_listener {
        static constexpr std::size_t listener_max_frame = 1 << 20;
        std::string endpoint;
        std::optional<frame_codec> codec;
        std::optional<zmq::socket_t> sub;
        std::optional<bool> asked;  // a shutdown_reply's restart flag, since the last launch

        void follow(const connection_info& c, const codec_options& limits) {
            if (sub && endpoint == c.iopub_endpoint()) return;
            endpoint = c.iopub_endpoint();
            codec.emplace(c.key, c.signature_scheme, limits);
            sub.emplace(shared_zmq_context(), zmq::socket_type::sub);
            sub->set(zmq::sockopt::linger, 0);
            // A shutdown_reply is small. A larger frame (an output) ends this
            // connection before ZeroMQ allocates it, and ZeroMQ connects
            // again: a 100 MB output is not held a second time for us.
            sub->set(zmq::sockopt::maxmsgsize,
                     static_cast<int64_t>(std::min<std::size_t>(limits.max_message_bytes, listener_max_frame)));
            sub->set(zmq::sockopt::reconnect_ivl, 10);
            sub->set(zmq::sockopt::subscribe, "");
            sub->connect(endpoint);
        }

        // Reads all iopub holds; only a header naming shutdown_reply is
        // verified and parsed (outputs pass by unread).
        void drain() {
            std::vector<zmq::message_t> parts;
            for (;;) {
                parts.clear();
                if (!zmq::recv_multipart(*sub, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
                std::size_t delim = 0;
                while (delim < parts.size() && parts[delim].to_string_view() != "<IDS|MSG>") ++delim;
                if (delim + 2 >= parts.size() ||
                    parts[delim + 2].to_string_view().find("shutdown_reply") == std::string_view::npos)
                    continue;
                std::vector<std::string> frames;
                for (auto& part : parts) frames.emplace_back(part.to_string());
                auto msg = codec->decode(std::move(frames));
                if (!msg || msg->msg_type() != "shutdown_reply") continue;
                auto restart = msg->content.find("restart");
                asked = restart != msg->content.end() && restart->is_boolean() && restart->get<bool>();
            }
        }
    };

    void watch(std::stop_token st) {
        int watched = -1;
        std::uint64_t watched_gen = 0;
        shutdown_listener iopub;
        while (!st.stop_requested()) {
            {
                std::lock_guard lock(mutex);
                if (watched_gen != gen.load() || watched < 0) {
                    if (watched >= 0) ::close(watched);
                    watched = proc->exit_fd() >= 0 ? ::fcntl(proc->exit_fd(), F_DUPFD_CLOEXEC, 0) : -1;
                    if (watched_gen != gen.load()) iopub.asked.reset();
                    watched_gen = gen.load();
                }
                try {
                    iopub.follow(conn, options.codec);
                } catch (const std::exception&) {
                    // No listener: every exit counts as a death, as before.
                }
            }
            zmq::pollitem_t items[3] = {{nullptr, wake_fd, ZMQ_POLLIN, 0},
                                        {nullptr, watched, ZMQ_POLLIN, 0},
                                        {iopub.sub ? iopub.sub->handle() : nullptr, -1, ZMQ_POLLIN, 0}};
            int count = (watched >= 0 ? 2 : 1);
            if (iopub.sub) {
                if (watched < 0) items[1] = items[2];
                count += 1;
            }
            if (zmq_poll(items, count, -1) < 0) {
                if (zmq_errno() == EINTR) continue;
                break;
            }
            if (items[0].revents & ZMQ_POLLIN) {
                std::uint64_t v;
                [[maybe_unused]] auto r = ::read(wake_fd, &v, sizeof v);
                continue;
            }
            if (iopub.sub) iopub.drain();
            if (watched >= 0 && (items[1].revents & ZMQ_POLLIN)) {
                // Its last words may still be on their way: the shutdown_reply
                // is published just before the kernel exits.
                bool ours;
                {
                    std::lock_guard lock(mutex);
                    ours = expected_exit || closing;
                }
                // A kernel a client shut down exits with status 0: its
                // broadcast is waited for up to 3 s then (a busy machine can
                // hold a message that long), 500 ms after a signal or
                // another status, before the exit is taken for a death.
                const auto clean = exited_cleanly(watched);
                const auto grace = clean.value_or(true) ? 3000ms : 500ms;
                for (auto until = steady::now() + grace; iopub.sub && !ours && !iopub.asked && steady::now() < until;) {
                    zmq::pollitem_t item{iopub.sub->handle(), 0, ZMQ_POLLIN, 0};
                    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - steady::now());
                    if (zmq_poll(&item, 1, std::max<long>(left.count(), 1)) < 0 && zmq_errno() != EINTR) break;
                    iopub.drain();
                }
                // No broadcast (most kernels send the reply only to the
                // asker): a clean exit of a shared kernel was asked for.
                auto asked = iopub.asked;
                if (!asked && clean.value_or(false) && options.clean_exit_is_shutdown) asked = false;
                on_exit(watched_gen, asked);
                ::close(watched);
                watched = -1;
            }
        }
        if (watched >= 0) ::close(watched);
    }

    // The process of generation g exited: end it as a client asked (asked:
    // a shutdown_reply's restart flag), or restart it, or declare it dead.
    void on_exit(std::uint64_t g, std::optional<bool> asked) {
        bool restarted = false;
        std::vector<std::function<void()>> to_call;
        std::vector<std::function<void(bool)>> to_tell;
        {
            std::lock_guard lock(mutex);
            if (g != gen.load() || expected_exit || closing) return;
            proc->stop(0ms);  // reap it and anything left in its group
            if (asked && !*asked) {
                // Shut down as a client asked: gone, not dead, not restarted.
                gave_up = true;
                to_tell = client_shutdown_callbacks;
            } else {
                // A kernel that ran a while was stable: its restart budget is renewed.
                if (steady::now() - launched_at > 10s) restarts = 0;
                // A restart a client asked for is not a death: always done, never counted.
                if (asked || (options.autorestart && restarts < options.restart_limit)) {
                    if (!asked) ++restarts;
                    try {
                        spawn_locked();
                        restarted = true;
                    } catch (const std::exception&) {
                        // Could not even spawn: the kernel is dead for good.
                    }
                }
                gave_up = !restarted;
                if (asked && restarted) to_tell = client_shutdown_callbacks;
                else to_call = restarted ? restarted_callbacks : dead_callbacks;
            }
        }
        restart_cv.notify_all();
        for (auto& cb : to_call) cb();
        for (auto& cb : to_tell) cb(restarted);
    }

    // --- stopping and restarting -----------------------------------------
    // Stops the current process: shutdown_request (unless now), wait,
    // SIGTERM, wait, SIGKILL, reap.
    void stop_process(bool now, bool restart) noexcept {
        {
            std::lock_guard lock(mutex);
            expected_exit = true;
            if (!proc || proc->pid() < 0) return;
        }
        if (!now && client) {
            try {
                client->shutdown(restart, options.shutdown_wait);
                std::lock_guard lock(mutex);
                proc->wait_until(steady::now() + options.shutdown_wait);
            } catch (...) {
                // No answer: fall through to signals.
            }
        }
        std::lock_guard lock(mutex);
        proc->stop(now ? 0ms : options.terminate_wait);
    }

    void restart(restart_options ro) {
        stop_process(ro.now, true);
        if (ro.new_ports) {
            new_ports();
            write_connection();
            make_client();
        }
        launch();
        restarts = 0;
        client->set_control(this);  // asked for: not a loss of state the next cell must report
    }

    void shutdown(bool now) noexcept {
        if (remote) {
            remote->shutdown();
            return;
        }
        {
            std::lock_guard lock(mutex);
            if (closing) return;
            closing = true;
        }
        restart_cv.notify_all();
        stop_restarter();
        stop_process(now, false);
        client.reset();
        cleanup_files();
        std::lock_guard lock(mutex);
        proc.reset();  // a container goes, with its private dirs
    }
};

kernel_manager::kernel_manager(std::unique_ptr<impl> p) : m_impl(std::move(p)) {}
kernel_manager::kernel_manager(kernel_manager&&) noexcept = default;
kernel_manager& kernel_manager::operator=(kernel_manager&& other) noexcept {
    if (this != &other) {
        if (m_impl) m_impl->shutdown(false);
        m_impl = std::move(other.m_impl);
    }
    return *this;
}
kernel_manager::~kernel_manager() {
    if (m_impl) m_impl->shutdown(false);
}

kernel_manager kernel_manager::start(kernel_options options) {
    auto p = std::make_unique<impl>();
    if (options.gateway && (options.sandbox || options.docker || options.inherit_env))
        throw error(errc::invalid_argument,
                    "a kernel on a Jupyter Server runs as the server runs it: the sandbox, a container and the whole "
                    "environment (sandbox, docker, inherit_env) are for a kernel kernex starts itself");
    if (options.docker && options.inherit_env)
        throw error(errc::invalid_argument, "a kernel in a container gets only the variables env names: inherit_env "
                                            "is for a local kernel");
    if (options.gateway) {
        p->remote.emplace(remote_kernel::start(
            *options.gateway,
            {.kernel_name = options.kernel_name, .env = options.env, .ready_timeout = options.ready_timeout}));
        p->options = std::move(options);
        return kernel_manager(std::move(p));
    }
    p->spec = options.spec ? *options.spec : find_kernelspec(options.kernel_name);
    // A signal to a sandboxed kernel's group reaches bwrap, not the kernel
    // (its own session inside): ask the kernel itself.
    if (options.sandbox) p->spec.interrupt_mode = interrupt_mode::message;
    if (options.docker && options.connection_file)
        throw error(errc::invalid_argument,
                    "a kernel in a container has its connection file in a private dir of its own: "
                    "connection_file cannot be chosen with docker");
    p->options = std::move(options);
    // A kernel id in the 8-4-4-4-12 uuid form jupyter_client uses.
    auto hex = new_id();
    std::erase(hex, '-');
    p->id = hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
            hex.substr(20, 12);
    if (p->options.docker) {
        auto docker = *p->options.docker;
        if (!docker.work_dir && p->options.cwd) docker.work_dir = p->options.cwd;
        p->proc = detail::make_docker_provisioner(docker, p->id);
        p->options.cwd.reset();  // the container's working directory is /workspace
    } else {
        p->proc = detail::make_local_provisioner(p->options.sandbox);
    }
    detail::kernel_layout layout;
    layout.conn_file = p->options.connection_file ? *p->options.connection_file
                                                  : jupyter_runtime_dir() / ("kernel-" + p->id + ".json");
    layout.base.transport = p->options.transport;
    layout.base.ip = p->options.ip;
    p->proc->adjust_layout(layout);
    p->conn_file = layout.conn_file;
    p->log_file = p->conn_file;
    p->log_file.replace_extension(".log");
    if (p->options.docker && p->options.ports && p->options.ports->transport != layout.base.transport)
        throw error(errc::invalid_argument, "a kernel in a container with network " + p->options.docker->network_mode +
                                                " uses " + layout.base.transport + ", not the " +
                                                p->options.ports->transport + " of the ports given");
    if (p->options.ports) {
        p->conn = *p->options.ports;
        if (p->conn.key.empty()) p->conn.key = random_key();
    } else {
        p->conn = allocate_ports(layout.base);
    }
    try {
        p->write_connection();
        p->make_client();
        p->launch();
    } catch (...) {
        // A start that fails (a program that cannot be executed, a port
        // taken for good) leaves nothing: not the connection file with its key.
        p->cleanup_files();
        throw;
    }
    p->start_restarter();
    return kernel_manager(std::move(p));
}

kernel_client& kernel_manager::client() {
    if (m_impl && m_impl->remote) return m_impl->remote->client();
    if (!m_impl || !m_impl->client) throw error(errc::invalid_argument, "the kernel has been shut down");
    return *m_impl->client;
}

const std::string& kernel_manager::id() const noexcept { return m_impl->remote ? m_impl->remote->id() : m_impl->id; }
const kernelspec& kernel_manager::spec() const noexcept {
    return m_impl->remote ? m_impl->remote->spec() : m_impl->spec;
}
const connection_info& kernel_manager::connection() const noexcept { return m_impl->conn; }
const std::filesystem::path& kernel_manager::connection_file() const noexcept { return m_impl->conn_file; }

int kernel_manager::pid() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->proc ? m_impl->proc->pid() : -1;
}

bool kernel_manager::alive() {
    if (m_impl->remote) return m_impl->remote->alive();
    std::lock_guard lock(m_impl->mutex);
    return m_impl->proc && m_impl->proc->running();
}

void kernel_manager::interrupt() {
    if (m_impl->remote) return m_impl->remote->interrupt();
    m_impl->interrupt();
}
void kernel_manager::restart(restart_options options) {
    if (m_impl->remote) return m_impl->remote->restart();
    m_impl->restart(options);
}
void kernel_manager::shutdown(bool now) noexcept {
    if (m_impl) m_impl->shutdown(now);
}

void kernel_manager::on_restarted(std::function<void()> callback) {
    if (m_impl->remote) return m_impl->remote->on_restarted(std::move(callback));
    std::lock_guard lock(m_impl->mutex);
    m_impl->restarted_callbacks.push_back(std::move(callback));
}

void kernel_manager::on_client_shutdown(std::function<void(bool)> callback) {
    if (m_impl->remote) return;  // the server's business
    std::lock_guard lock(m_impl->mutex);
    m_impl->client_shutdown_callbacks.push_back(std::move(callback));
}

void kernel_manager::on_dead(std::function<void()> callback) {
    if (m_impl->remote) return m_impl->remote->on_dead(std::move(callback));
    std::lock_guard lock(m_impl->mutex);
    m_impl->dead_callbacks.push_back(std::move(callback));
}

int kernel_manager::restart_count() const noexcept {
    return m_impl->remote ? m_impl->remote->restart_count() : m_impl->restarts.load();
}

std::string kernel_manager::log_tail(std::size_t max_bytes) const {
    if (m_impl->remote) return {};
    std::lock_guard lock(m_impl->mutex);
    return m_impl->proc ? m_impl->proc->log_tail(max_bytes) : std::string();
}

}  // namespace kernex
