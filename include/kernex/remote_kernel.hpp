// remote_kernel: one kernel on a Jupyter Server / Kernel Gateway /
// Enterprise Gateway, with kernel_manager's lifetime: start() asks the
// server for a kernel by name, opens its websocket and waits until it is
// ready; interrupt and restart are REST calls; destroying it (or
// shutdown()) deletes the kernel. Its client() is an ordinary kernel_client
// over the websocket: a cell whose kernel the server restarted after a
// crash, or that was deleted, or whose server went away, ends with
// kernel_died. kernel_manager::start with kernel_options::gateway set
// delegates to this class.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "kernex/gateway.hpp"
#include "kernex/kernel_client.hpp"
#include "kernex/kernelspec.hpp"

namespace kernex {

struct remote_kernel_options {
    std::string kernel_name = "python3";
    std::map<std::string, std::string> env{};          // passed on in the start request
    std::chrono::milliseconds ready_timeout{60'000};  // start (or restart) until ready
};

class remote_kernel {
public:
    // Starts a kernel on the server and waits until it is ready. Throws
    // kernex::error: gateway_client's errors, not_found (no such
    // kernelspec on the server, listing its names), timeout / launch_failed
    // (not ready; the kernel is deleted again).
    static remote_kernel start(gateway_options gateway, remote_kernel_options options = {});
    // A kernel already running on the server. shutdown() deletes it only
    // when owned. Throws like start (not_found for an unknown id).
    static remote_kernel attach(gateway_options gateway, const std::string& kernel_id, bool owned = false,
                                std::chrono::milliseconds ready_timeout = std::chrono::seconds(60));

    remote_kernel(remote_kernel&&) noexcept;
    remote_kernel& operator=(remote_kernel&&) noexcept;
    ~remote_kernel();  // shutdown()

    // The client bound to this kernel (use it from one thread at a time).
    // Throws kernex::error(invalid_argument) after shutdown().
    kernel_client& client();
    const std::string& id() const noexcept;
    // The server's kernelspec for it (argv and env describe the server's side).
    const kernelspec& spec() const noexcept;
    const gateway_client& gateway() const noexcept;

    // Whether the server still has the kernel and it is not dead (a REST call).
    bool alive() noexcept;
    // POST interrupt (thread-safe: may be called while client() is busy).
    void interrupt();
    // POST restart, then waits until the kernel is ready again.
    void restart();
    // DELETE (when owned) and closes the websocket. Idempotent, noexcept.
    void shutdown() noexcept;

    // Called on the thread using client() when the server reports that it
    // restarted the kernel after it died, or that the kernel is dead for good.
    void on_restarted(std::function<void()> callback);
    void on_dead(std::function<void()> callback);
    // Restarts the server made after the kernel died, as seen by the client.
    int restart_count() const noexcept;

    struct impl;

private:
    explicit remote_kernel(std::unique_ptr<impl> p);
    std::unique_ptr<impl> m_impl;
};

}  // namespace kernex
