// kernel_manager: one Jupyter kernel's lifetime. start() finds the
// kernelspec, writes a 0600 connection file in the runtime dir, launches the
// kernel in its own process group and waits until it is ready (kernel_info
// answered and iopub proven subscribed). It interrupts per the kernelspec,
// restarts, watches for unexpected death (restarting up to a limit), and
// shuts down: shutdown_request, wait, SIGTERM, wait, SIGKILL, reap, remove
// the connection file. Destroying it does the same: no process, zombie or
// file left behind.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernex/connection.hpp"
#include "kernex/gateway.hpp"
#include "kernex/kernel_client.hpp"
#include "kernex/kernelspec.hpp"

namespace kernex {

struct kernel_options {
    std::string kernel_name = "python3";
    std::optional<kernelspec> spec{};                     // instead of looking kernel_name up
    std::optional<std::filesystem::path> connection_file{};// default: <runtime dir>/kernel-<id>.json
    std::optional<std::filesystem::path> cwd{};           // the kernel's working directory
    std::map<std::string, std::string> env{};             // added to the kernelspec's env
    std::string transport = "tcp";                        // "tcp" or "ipc"
    std::string ip = "127.0.0.1";
    // Use these ports (transport, ip, ports; a key is made when empty)
    // instead of allocating them. When the kernel cannot bind them (a port
    // is taken), fresh ones are allocated, up to port_retries times.
    std::optional<connection_info> ports{};
    std::chrono::milliseconds ready_timeout{60'000};
    bool autorestart = true;                               // restart on unexpected death
    int restart_limit = 5;                                 // consecutive automatic restarts
    std::chrono::milliseconds shutdown_wait{3000};        // after shutdown_request, before SIGTERM
    std::chrono::milliseconds terminate_wait{2000};       // after SIGTERM, before SIGKILL
    int port_retries = 3;                                  // new ports when a port was taken at start
    // Start the kernel on this Jupyter Server / gateway instead (a
    // remote_kernel): kernel_name, env and ready_timeout apply; the local
    // launch options do not, pid() is -1, connection() is empty, restarts
    // after a crash are the server's, and shutdown deletes the kernel.
    std::optional<gateway_options> gateway{};
};

struct restart_options {
    bool now = false;        // kill instead of asking the kernel to shut down
    bool new_ports = false;  // allocate a fresh set of ports
};

class kernel_manager {
public:
    // Launches a kernel and waits until it is ready. Throws kernex::error:
    // not_found (kernelspec), launch_failed (exec failed, or the kernel exited
    // before ready: its exit status and stderr tail are in the message),
    // timeout (not ready by ready_timeout; the kernel is stopped).
    static kernel_manager start(kernel_options options = {});

    kernel_manager(kernel_manager&&) noexcept;
    kernel_manager& operator=(kernel_manager&&) noexcept;
    ~kernel_manager();

    // The client bound to this kernel (use it from one thread at a time).
    kernel_client& client();

    const std::string& id() const noexcept;
    const kernelspec& spec() const noexcept;
    const connection_info& connection() const noexcept;
    const std::filesystem::path& connection_file() const noexcept;
    int pid() const;           // the current kernel process, -1 when none
    bool alive();

    // SIGINT to the kernel's process group (interrupt_mode signal) or
    // interrupt_request on control (message).
    void interrupt();
    // Restarts the kernel and waits until ready again. Throws like start().
    void restart(restart_options options = {});
    // shutdown_request, wait, SIGTERM, wait, SIGKILL, reap, remove the
    // connection file. now = straight to SIGKILL. Idempotent, noexcept.
    void shutdown(bool now = false) noexcept;

    // Called from the restarter's thread after an automatic restart, and when
    // the kernel died and will not be restarted (limit reached or autorestart off).
    void on_restarted(std::function<void()> callback);
    void on_dead(std::function<void()> callback);
    int restart_count() const noexcept;

    // The last bytes of the kernel's stdout/stderr log.
    std::string log_tail(std::size_t max_bytes = 4096) const;

    struct impl;

private:
    explicit kernel_manager(std::unique_ptr<impl> p);
    std::unique_ptr<impl> m_impl;
};

}  // namespace kernex
