// docker_provisioner: the kernel as the command of a Docker container,
// through the Engine API (docker_client; never the docker CLI).
//
// The container runs the kernelspec's argv under docker-init (HostConfig.Init):
// as PID 1 it forwards SIGINT (an interrupt is a kill with signal SIGINT) and
// SIGTERM to the kernel, reaps, and exits when the kernel does, so a kernel
// that dies (killed inside the container, say) ends its container, which is
// how death is seen. The work dir is bound at /workspace; a private 0700
// host dir, bound at the same absolute path inside, holds the connection
// file and the ipc sockets, so paths in the file are valid on both sides and
// with network "none" nothing listens on any port.
//
// Death: with a local daemon (a unix socket) the container's init is a
// process of this host, and a pidfd on it is the exit fd the restarter and
// the client poll; a second inspect proves the pid was the container's. With
// any other daemon a thread of the provisioner inspects the container every
// 200 ms and signals an eventfd when it has stopped.
//
// A restart starts the same container again (its /tmp is kept, its
// processes are not); shutdown removes it with the private dir.
//
// Confinement and death: the container is made as containers.hpp says
// (caps dropped, no-new-privileges, read-only root, labels naming this
// process); a reaper (reaper.hpp) removes it and the dirs should this
// process be killed, and every start first sweeps away the containers of
// kernex processes that died.
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "connection/private_dirs.hpp"
#include "docker/containers.hpp"
#include "docker/nosuid_bind.hpp"
#include "docker/reaper.hpp"
#include "kernex/docker_client.hpp"
#include "kernex/error.hpp"
#include "process/remove_tree.hpp"
#include "manager/provisioner.hpp"

namespace kernex::detail {

namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto watch_period = 200ms;

// A fresh directory named like pattern's XXXXXX, mode 0700. Throws io_error.
fs::path make_temp_dir(const fs::path& parent, const std::string& prefix) {
    std::string pattern = (parent / (prefix + "XXXXXX")).string();
    if (!::mkdtemp(pattern.data()))
        throw error(errc::io_error, "cannot create a directory in " + parent.string() + ": " + std::strerror(errno));
    return pattern;
}

void remove_tree(const fs::path& dir) noexcept {
    if (!dir.empty()) detail::remove_tree(dir.c_str());  // dirs the kernel made read-only too
}

void close_fd(int& fd) noexcept {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

bool readable(int fd, int timeout_ms) noexcept {
    pollfd p{fd, POLLIN, 0};
    int n;
    while ((n = ::poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {}
    return n > 0;
}

int poll_ms(steady::time_point deadline) noexcept {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now()).count();
    return static_cast<int>(std::clamp<std::int64_t>(left, 0, 60'000));
}

struct container_state {
    bool found = false;
    bool running = false;
    int pid = 0;
    int exit_code = -1;
    bool oom_killed = false;
    std::string started_at;
};

container_state inspect(docker_client& client, const std::string& id) {
    container_state out;
    const docker_response r = client.request("GET", "/containers/" + id + "/json");
    if (r.status == 404) return out;
    if (r.status != 200)
        throw error(errc::docker_error, "the Docker daemon at " + client.host() + " could not inspect container " + id +
                                            ": " + docker::daemon_message(r));
    const auto j = nlohmann::json::parse(r.body, nullptr, false);
    const auto state = j.is_object() ? j.value("State", nlohmann::json::object()) : nlohmann::json::object();
    out.found = true;
    out.running = state.value("Running", false);
    out.pid = state.value("Pid", 0);
    out.exit_code = state.value("ExitCode", -1);
    out.oom_killed = state.value("OOMKilled", false);
    out.started_at = state.value("StartedAt", "");
    return out;
}

class docker_provisioner final : public provisioner {
public:
    docker_provisioner(const docker_kernel_options& options, const std::string& kernel_id)
        : m_options(options), m_kernel_id(kernel_id),
          m_client(docker_client_options{
              .host = options.docker_host, .tls = options.tls, .timeout = options.request_timeout}) {
        if (m_options.image.empty()) throw error(errc::invalid_argument, "a kernel in a container needs an image");
        if (m_options.request_timeout.count() <= 0)
            throw error(errc::invalid_argument, "the docker request_timeout must be positive");
        docker::check_limits({m_options.memory, m_options.cpus, m_options.pids_limit});
        if (m_options.network_mode.empty()) m_options.network_mode = "none";
        if (!m_options.user) {
            m_options.user = std::to_string(::getuid()) + ":" + std::to_string(::getgid());
            if (::getuid() != 0) m_home = "/tmp";  // no passwd entry in the image: HOME would be "/"
        }
        if (m_options.read_only) m_home = "/tmp";  // the only place a home can be written
        m_local_daemon = m_client.host().starts_with("unix://");
        m_client.api_version();  // the daemon is reachable (or a clear error now)
        docker::sweep_orphans(m_client);
        m_reaper = std::make_unique<docker::reaper>(m_client);

        try {
            const fs::path runtime = jupyter_runtime_dir();
            create_private_dirs(runtime);
            m_private_dir = fs::canonical(make_temp_dir(runtime, "docker-"));
            m_reaper->track_dir(m_private_dir.string());
            if (m_options.work_dir) {
                fs::create_directories(fs::absolute(*m_options.work_dir));
                m_work_dir = fs::canonical(fs::absolute(*m_options.work_dir));
            } else {
                m_work_dir = fs::canonical(make_temp_dir(fs::temp_directory_path(), "kernex-kernel-"));
                m_owns_work_dir = true;
                m_reaper->track_dir(m_work_dir.string());
            }
            m_work_bind = std::make_unique<docker::nosuid_bind>(m_client, m_work_dir, m_reaper.get());
        } catch (const fs::filesystem_error& e) {
            release_dirs();
            throw error(errc::io_error, std::string("cannot make the kernel's directories: ") + e.what());
        } catch (...) {
            release_dirs();
            throw;
        }
    }

    ~docker_provisioner() override {
        stop(0ms);
        remove_container();
        release_dirs();
    }

    void adjust_layout(kernel_layout& layout) override {
        layout.conn_file = m_private_dir / ("kernel-" + m_kernel_id + ".json");
        if (m_options.network_mode == "none") layout.base.transport = "ipc";
        if (layout.base.transport == "ipc") {
            layout.base.ip = (m_private_dir / "kernel").string();
            if (layout.base.ip.size() + 6 >= sizeof(sockaddr_un::sun_path))  // "-65535"
                throw error(errc::invalid_argument,
                            "the ipc socket paths under " + m_private_dir.string() +
                                " are too long for unix sockets: set JUPYTER_RUNTIME_DIR to a shorter path");
        } else {
            layout.base.ip = "127.0.0.1";
        }
    }

    connection_info kernel_view(const connection_info& conn) const override {
        if (!publishes(conn)) return conn;
        connection_info inside = conn;
        inside.ip = "0.0.0.0";  // the published ports reach the container's own interface
        return inside;
    }

    void launch(const launch_request& request) override {
        stop_watcher();
        close_fd(m_pidfd);
        close_fd(m_event);
        m_exit_text.clear();
        const std::vector<std::uint16_t> ports = publishes(request.conn) ? ports_of(request.conn)
                                                                         : std::vector<std::uint16_t>{};
        if (!m_container_id.empty() && ports != m_published) {
            // Published ports are fixed when a container is made.
            remove_container();
        }
        if (m_container_id.empty()) {
            docker::container_config config;
            config.image = m_options.image;
            config.name = m_options.container_name.value_or("kernex-kernel-" + docker::random_hex(12));
            config.cmd = request.argv;
            for (const auto& [name, value] : request.env) config.env.push_back(name + "=" + value);
            if (!m_home.empty() && !request.env.contains("HOME")) config.env.push_back("HOME=" + m_home);
            config.user = *m_options.user;
            config.binds = {m_work_bind->source() + ":/workspace:rw",
                            m_private_dir.string() + ":" + m_private_dir.string() + ":rw"};
            config.network_mode = m_options.network_mode;
            config.limits = {m_options.memory, m_options.cpus, m_options.pids_limit};
            config.labels = docker::owner_labels(
                m_owns_work_dir ? std::vector{m_private_dir.string(), m_work_dir.string()}
                                : std::vector{m_private_dir.string()},
                m_work_bind->mount_points());
            config.labels["org.kernex.kernel"] = m_kernel_id;
            config.init = true;
            config.published_ports = ports;
            config.confinement = {m_options.read_only, m_options.no_new_privileges, m_options.cap_add};
            m_container_id = docker::create_container(m_client, config);
            m_reaper->track_container(m_container_id);
            m_container_name = config.name;
            m_published = ports;
        }
        // nosuid,nodev where kernex can (nosuid_bind.hpp), for every start: a restart too.
        const auto work_mounted = m_work_bind->for_start();
        docker::start_container(m_client, m_container_id, m_options.image,
                                "the image must be able to run the kernelspec's command, " + request.argv.front() +
                                    "; a bad memory, cpus or pids_limit?");
        m_started = true;
        watch_exit();
    }

    bool signal(int sig) noexcept override {
        if (!m_started) return false;
        try {
            const char* name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGKILL ? "SIGKILL" : nullptr;
            const std::string which = name ? name : std::to_string(sig);
            return m_client.request("POST", "/containers/" + m_container_id + "/kill?signal=" + which).status == 204;
        } catch (...) {
            return false;
        }
    }

    int exit_fd() const noexcept override { return m_pidfd >= 0 ? m_pidfd : m_event; }

    bool running() noexcept override { return m_started && exit_fd() >= 0 && !readable(exit_fd(), 0); }

    bool wait_until(steady::time_point deadline) noexcept override {
        if (!m_started || exit_fd() < 0) return true;
        for (;;) {
            if (readable(exit_fd(), poll_ms(deadline))) return true;
            if (steady::now() >= deadline) return false;
        }
    }

    void stop(std::chrono::milliseconds grace) noexcept override {
        if (!m_started) return;
        if (running()) {
            if (grace.count() > 0 && signal(SIGTERM)) wait_until(steady::now() + grace);
            if (running()) {
                signal(SIGKILL);
                wait_until(steady::now() + 10s);
            }
        }
        record_exit();
        stop_watcher();
        close_fd(m_pidfd);
        close_fd(m_event);
        m_started = false;
        m_pid = -1;
    }

    std::string exit_text() const override { return m_exit_text; }
    int pid() const noexcept override { return m_started ? m_pid : -1; }
    std::string log_tail(std::size_t max_bytes) override {
        return m_container_id.empty() ? std::string() : docker::container_logs(m_client, m_container_id, max_bytes);
    }

private:
    bool publishes(const connection_info& conn) const {
        return conn.transport == "tcp" && m_options.network_mode != "host" && m_options.network_mode != "none";
    }
    static std::vector<std::uint16_t> ports_of(const connection_info& c) {
        return {c.shell_port, c.iopub_port, c.stdin_port, c.control_port, c.hb_port};
    }

    // After a start: an fd that becomes readable when the container stops.
    void watch_exit() {
        container_state state;
        try {
            state = inspect(m_client, m_container_id);
        } catch (const error&) {
        }
        m_pid = state.pid;
        if (state.running && state.pid > 0 && m_local_daemon) {
            const int fd = static_cast<int>(::syscall(SYS_pidfd_open, state.pid, 0));
            if (fd >= 0) {
                // The pid may have ended and been reused between the inspect and
                // the pidfd: the same container start, still running, rules that out.
                container_state again;
                try {
                    again = inspect(m_client, m_container_id);
                } catch (const error&) {
                }
                if (again.running && again.pid == state.pid && again.started_at == state.started_at) {
                    m_pidfd = fd;
                    return;
                }
                ::close(fd);
                if (!again.running) state.running = false;
            }
        }
        m_event = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m_event < 0) throw error(errc::io_error, "eventfd failed");
        if (!state.running) {
            signal_event(m_event);  // already stopped (or gone)
            return;
        }
        m_watcher = std::jthread([this, event = m_event](std::stop_token st) { watch(st, event); });
    }

    static void signal_event(int fd) noexcept {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(fd, &one, sizeof one);
    }

    // The watcher thread: inspects with a client of its own until the
    // container has stopped (or the daemon stopped answering), then signals.
    void watch(std::stop_token st, int event) {
        docker_client client({.host = m_client.host(),
                              .tls = m_options.tls,
                              .timeout = std::min(m_options.request_timeout, 5000ms)});
        int failures = 0;
        std::mutex m;
        std::condition_variable_any cv;
        while (!st.stop_requested()) {
            try {
                const auto state = inspect(client, m_container_id);
                failures = 0;
                if (!state.running) break;
            } catch (...) {
                if (++failures >= 3) break;  // the daemon is gone, and its containers with it
            }
            std::unique_lock lock(m);
            cv.wait_for(lock, st, watch_period, [] { return false; });
        }
        if (!st.stop_requested()) signal_event(event);
    }

    void stop_watcher() noexcept {
        if (!m_watcher.joinable()) return;
        m_watcher.request_stop();
        m_watcher.join();
    }

    // The container has stopped: how it ended (the daemon may record it a
    // moment after its init exits).
    void record_exit() noexcept {
        if (m_container_id.empty()) return;
        const auto until = steady::now() + 2s;
        try {
            for (;;) {
                const auto state = inspect(m_client, m_container_id);
                if (!state.found) {
                    m_exit_text = "the container is gone";
                    return;
                }
                if (!state.running) {
                    m_exit_text = "its container exited with code " + std::to_string(state.exit_code);
                    if (state.oom_killed)
                        m_exit_text += ": out of memory";
                    else if (state.exit_code > 128 && state.exit_code < 160)
                        m_exit_text += ": the kernel was killed by signal " + std::to_string(state.exit_code - 128);
                    return;
                }
                if (steady::now() >= until) return;
                std::this_thread::sleep_for(20ms);
            }
        } catch (...) {
        }
    }

    void remove_container() noexcept {
        docker::remove_container(m_client, m_container_id);
        if (m_reaper) m_reaper->forget_container(m_container_id);
        m_container_id.clear();
        // Nothing of the kernel runs now: no setuid file of its stays in a work dir that stays.
        if (!m_owns_work_dir && !m_work_dir.empty()) docker::clear_setuid_bits(m_work_dir);
    }

    void release_dirs() noexcept {
        m_work_bind.reset();  // its mount point, before the dir it binds
        remove_tree(m_private_dir);
        if (m_reaper) m_reaper->forget_dir(m_private_dir.string());
        m_private_dir.clear();
        if (m_owns_work_dir) {
            remove_tree(m_work_dir);
            if (m_reaper) m_reaper->forget_dir(m_work_dir.string());
        }
        m_work_dir.clear();
    }

    docker_kernel_options m_options;
    std::string m_kernel_id;
    docker_client m_client;
    bool m_local_daemon = false;
    std::string m_home;
    fs::path m_private_dir;
    fs::path m_work_dir;
    bool m_owns_work_dir = false;
    std::string m_container_id;
    std::string m_container_name;
    std::vector<std::uint16_t> m_published;
    bool m_started = false;
    int m_pid = -1;
    int m_pidfd = -1;
    int m_event = -1;
    std::string m_exit_text;
    std::unique_ptr<docker::reaper> m_reaper;  // removes the container and the dirs should we die
    std::unique_ptr<docker::nosuid_bind> m_work_bind;  // after m_reaper, which it tells of its mount point
    std::jthread m_watcher;  // last: stopped before what it uses goes
};

}  // namespace

std::unique_ptr<provisioner> make_docker_provisioner(const docker_kernel_options& options, const std::string& kernel_id) {
    return std::make_unique<docker_provisioner>(options, kernel_id);
}

}  // namespace kernex::detail
