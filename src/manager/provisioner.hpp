// provisioner: where a kernel_manager's kernel process runs, behind one
// interface: a local child process (local_provisioner) or a process in a
// Docker container (docker_provisioner). kernel_manager owns the connection
// file, the client, the restarter and the order of a shutdown; a provisioner
// only starts, signals, watches and stops the process, and says where the
// connection file and ipc sockets must live. Internal to the manager module.
//
// Threads: kernel_manager calls every method with its mutex held, except
// the constructor, adjust_layout and the destructor.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernex/connection.hpp"
#include "kernex/kernel_manager.hpp"

namespace kernex::detail {

struct launch_request {
    std::vector<std::string> argv;  // the kernelspec's, rendered with the connection file
    std::optional<std::filesystem::path> cwd;
    std::map<std::string, std::string> env;  // the kernelspec's and the caller's
    std::filesystem::path log_file;          // where a local kernel's stdout/stderr go
    std::filesystem::path conn_file;         // removed with the log if kernex dies
    bool inherit_env = false;                // kernel_options::inherit_env
    connection_info conn;                    // the sockets it will bind (ports to publish)
};

// Where the connection file goes and how the kernel's sockets are addressed.
struct kernel_layout {
    std::filesystem::path conn_file;
    connection_info base;  // transport and ip, before ports are allocated
};

class provisioner {
public:
    // Stops the process and removes whatever the provisioner made (a
    // container, private directories). noexcept.
    virtual ~provisioner() = default;

    // Moves the connection file and the ipc socket prefix where this
    // provisioner's kernel can reach them, or changes the transport. The
    // default leaves the layout as the caller chose it.
    virtual void adjust_layout(kernel_layout&) {}
    // The connection info as the kernel must see it in its connection file
    // (a kernel in a container may bind another address than the client's).
    virtual connection_info kernel_view(const connection_info& conn) const { return conn; }

    // Starts the kernel process (again, after stop()). Throws kernex::error
    // (launch_failed, not_found, docker_error).
    virtual void launch(const launch_request& request) = 0;
    // SIGINT for an interrupt. Returns false when there is no process to signal.
    virtual bool signal(int sig) noexcept = 0;
    // An fd that becomes readable once the current process has exited (owned
    // by the provisioner: dup it to keep it); -1 when there is none.
    virtual int exit_fd() const noexcept = 0;
    virtual bool running() noexcept = 0;
    // Waits for the process to exit until deadline. True when it has exited.
    virtual bool wait_until(std::chrono::steady_clock::time_point deadline) noexcept = 0;
    // SIGTERM, wait up to grace, SIGKILL, reap (grace 0: straight to SIGKILL).
    // Idempotent. Afterwards pid() is -1 and exit_text() says how it ended.
    virtual void stop(std::chrono::milliseconds grace) noexcept = 0;
    // How the last process ended: "exit code 3", "killed by signal 9 (SIGKILL)"; empty when unknown.
    virtual std::string exit_text() const = 0;
    virtual int pid() const noexcept = 0;
    // The last bytes the kernel wrote on its stdout and stderr.
    virtual std::string log_tail(std::size_t max_bytes) = 0;
};

std::unique_ptr<provisioner> make_local_provisioner(const std::optional<sandbox_options>& sandbox = std::nullopt);
// Throws kernex::error(invalid_argument) for bad options, (docker_error)
// when the daemon cannot be reached, (io_error) when a directory cannot be made.
std::unique_ptr<provisioner> make_docker_provisioner(const docker_kernel_options& options, const std::string& kernel_id);

}  // namespace kernex::detail
