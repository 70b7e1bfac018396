// kernel_manager: one Jupyter kernel's lifetime. start() finds the
// kernelspec, writes a 0600 connection file in the runtime dir, launches the
// kernel in its own process group and waits until it is ready (kernel_info
// answered and iopub proven subscribed). It interrupts per the kernelspec,
// restarts, watches for unexpected death (restarting up to a limit), and
// shuts down: shutdown_request, wait, SIGTERM, wait, SIGKILL, reap, remove
// the connection file. Destroying it does the same: no process, zombie or
// file left behind. The kernel runs as a local process, inside a Docker
// container (kernel_options::docker), or on a Jupyter Server (::gateway).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernex/connection.hpp"
#include "kernex/docker_client.hpp"
#include "kernex/gateway.hpp"
#include "kernex/kernel_client.hpp"
#include "kernex/sandbox.hpp"
#include "kernex/kernelspec.hpp"

namespace kernex {

// A kernel inside a Docker container (through the Engine API; the image is
// never pulled). The kernelspec's argv runs in the container under an init
// (docker-init) as the container's command; the work dir is bound at
// /workspace, its working directory. The connection file and, with network
// "none", the ipc sockets live in a private (0700) host dir bound at the
// same path inside, so no port is opened anywhere. Other network modes use
// tcp: "host" on 127.0.0.1, any other with the five ports published on
// 127.0.0.1. Shutdown stops and removes the container and that dir. The
// container is confined by default (docs/security.md): the caller's uid:gid,
// every capability dropped, no-new-privileges, a read-only root with a tmpfs
// /tmp (HOME=/tmp), network none, 1 GiB of memory, 256 processes; each field
// below loosens one. Should kernex be killed, a reaper process removes the
// container and the dirs, and the next kernex that starts a docker kernel or
// executor removes what is left of dead ones.
struct docker_kernel_options {
    std::string image;                         // must be in the daemon; must run the kernelspec's argv
    std::string network_mode = "none";         // "none" (ipc), "host", "bridge", a network's name (tcp)
    // Bound read-write at /workspace. Unset: kernel_options::cwd, else a fresh
    // temporary dir that shutdown removes.
    std::optional<std::filesystem::path> work_dir{};
    // Limits; nullopt: none.
    std::optional<std::uint64_t> memory = std::uint64_t{1} << 30;  // bytes, swap included (none beyond it)
    std::optional<double> cpus{};              // 1.5 = one and a half CPUs
    std::optional<std::int64_t> pids_limit = 256;
    // "uid:gid" in the container. Unset: the caller's, so files in the work
    // dir and the sockets are the caller's. Another user must be root: the
    // private dir is the caller's, mode 0700.
    std::optional<std::string> user{};
    bool read_only = true;                     // the root filesystem, with a tmpfs /tmp; false: writable
    bool no_new_privileges = true;             // setuid bits and file capabilities grant nothing
    std::vector<std::string> cap_add{};        // every capability is dropped but these
    std::optional<std::string> container_name{};  // unset: kernex-kernel-<12 hex digits>
    std::string docker_host{};                 // unix:// or tcp://; empty: $DOCKER_HOST, else the system's socket
    docker_tls_options tls{};                  // TLS to a tcp:// daemon; unset: DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
    std::chrono::milliseconds request_timeout{30'000};  // each Engine API request
};

struct kernel_options {
    std::string kernel_name = "python3";
    std::optional<kernelspec> spec{};                     // instead of looking kernel_name up
    std::optional<std::filesystem::path> connection_file{};// default: <runtime dir>/kernel-<id>.json
    std::optional<std::filesystem::path> cwd{};           // the kernel's working directory
    std::map<std::string, std::string> env{};             // added to the kernelspec's env
    // A local kernel's environment: PATH, HOME, LANG, LC_*, TERM, TZ and USER
    // of ours, then the kernelspec's env, then env; inherit_env: all of ours.
    bool inherit_env = false;
    // Run a local kernel in the bubblewrap sandbox (sandbox.hpp): ipc
    // transport in a private dir bound inside, cwd (else ours) read-write.
    std::optional<sandbox_options> sandbox{};
    std::string transport = "tcp";                        // "tcp" or "ipc"
    std::string ip = "127.0.0.1";
    // Use these ports (transport, ip, ports; a key is made when empty)
    // instead of allocating them. When the kernel cannot bind them (a port
    // is taken), fresh ones are allocated, up to port_retries times.
    std::optional<connection_info> ports{};
    std::chrono::milliseconds ready_timeout{60'000};
    bool autorestart = true;                               // restart on unexpected death
    int restart_limit = 5;                                 // consecutive automatic restarts
    // An exit with status 0 that no shutdown_reply broadcast on iopub
    // explains is taken for a client's shutdown_request: not restarted,
    // on_client_shutdown(false). For a kernel other clients use (kernex
    // kernel start sets it): most kernels (all but ipykernel) answer a
    // shutdown_request only to the client that sent it, and a kernel ends
    // with status 0 only when asked to (a crash is a signal or another
    // status). The price: a restart such a kernel was asked for ends it too,
    // and code that exits 0 itself ends it. Off, such an exit is a death.
    // Only a local kernel's exit status is known: a container's exit
    // without the broadcast is always a death.
    bool clean_exit_is_shutdown = false;
    std::chrono::milliseconds shutdown_wait{3000};        // after shutdown_request, before SIGTERM
    std::chrono::milliseconds terminate_wait{2000};       // after SIGTERM, before SIGKILL
    int port_retries = 3;                                  // new ports when a port was taken at start
    // What the kernel can make the client hold (see codec_options and
    // docs/reliability.md): a frame above max_message_bytes is refused by
    // ZeroMQ before it is allocated, a larger multipart message by the codec.
    codec_options codec{};
    int iopub_queue_messages = 1000;                       // see zmq_transport_options
    // Start the kernel on this Jupyter Server / gateway instead (a
    // remote_kernel): kernel_name, env and ready_timeout apply; the local
    // launch options do not, pid() is -1, connection() is empty, restarts
    // after a crash are the server's, and shutdown deletes the kernel.
    std::optional<gateway_options> gateway{};
    // Run the kernel in a Docker container instead of as a local process:
    // cwd sets the default work dir; with network "none" the transport is
    // ipc whatever `transport` says; connection_file cannot be chosen (it
    // lives in the container's private dir). pid() is the container's init
    // process on the host (when the daemon is local).
    std::optional<docker_kernel_options> docker{};
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
    // Called from the restarter's thread, instead of the two above, when the
    // kernel exited after a client's shutdown_request (another client, e.g.
    // `exit` in jupyter console; seen as the shutdown_reply the kernel
    // broadcasts on iopub, as ipykernel does): restarted is true when the
    // client asked for a restart and the new kernel runs (done whatever
    // autorestart says, not counted against restart_limit); false when the
    // kernel is gone as asked (not restarted; requests end kernel_died). A
    // kernel that exits without that broadcast counts as dead, unless
    // clean_exit_is_shutdown and its exit status was 0 (restarted false).
    void on_client_shutdown(std::function<void(bool restarted)> callback);
    int restart_count() const noexcept;

    // The last bytes of the kernel's stdout/stderr log.
    std::string log_tail(std::size_t max_bytes = 4096) const;

    struct impl;

private:
    explicit kernel_manager(std::unique_ptr<impl> p);
    std::unique_ptr<impl> m_impl;
};

}  // namespace kernex
