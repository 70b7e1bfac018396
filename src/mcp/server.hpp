// `kernex mcp`: a Model Context Protocol server (internal to src/mcp and the
// CLI). Tools run code through the public API only: run_code through
// make_executor's executors (a fresh one per call), run_cell and the
// session tools on Jupyter kernels through multi_kernel_manager. The same
// server is reached over stdio (newline-delimited JSON-RPC) or Streamable
// HTTP (Boost.Beast, loopback, bearer token, Origin checked).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernex/gateway.hpp"
#include "mcp/json_rpc.hpp"

namespace kernex::mcp {

struct server_options {
    // make_executor's config for run_code: {"executor": "local"|"docker", ...}.
    // Its "timeout" (seconds, default 60) is the most a call may ask for.
    nlohmann::json executor_config = {{"executor", "local"}};
    // Sessions (run_cell): the kernelspec started when a call names none,
    // where kernels run, and their limits.
    std::string kernel_name = "python3";
    std::optional<std::string> work_dir{};      // the kernels' working dir (default: the server's)
    std::optional<std::string> docker_image{};  // run each session's kernel in a container of this image
    std::optional<gateway_options> gateway{};   // or on this Jupyter Server / gateway
    std::chrono::milliseconds timeout{60'000};  // a run_cell's limit and default
    std::size_t max_output = std::size_t{1} << 20;  // bytes of a run_cell's output kept
    int max_sessions = 8;
    std::chrono::milliseconds session_idle{std::chrono::minutes(30)};
    std::chrono::milliseconds startup_timeout{60'000};
    std::size_t max_message_bytes = default_max_message_bytes;
    int max_calls = 64;  // tools/call in flight per client connection
    // Ask the user (MCP elicitation, through the client) before each
    // run_code and run_cell; a client without elicitation cannot initialize.
    bool confirm = false;
    // How long a question may wait for its answer (then: not run).
    std::chrono::milliseconds confirm_wait{std::chrono::minutes(10)};
};

struct http_options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;                // 0: any free port (printed)
    std::string token;                      // empty: one is generated and printed
    std::vector<std::string> allowed_origins;  // besides http(s)://localhost|127.0.0.1|[::1][:port]
    int max_clients = 32;                   // MCP sessions (Mcp-Session-Id) at once
};

// Serves MCP on in_fd/out_fd until EOF on in_fd or a byte on stop_fd, then
// cancels running calls and shuts every kernel down. Returns 0. Throws
// kernex::error for setup failures.
int serve_stdio(const server_options& options, int in_fd, int out_fd, int stop_fd);

// Serves MCP over Streamable HTTP at http://host:port/mcp until a byte on
// stop_fd; on_listening gets the URL and token once it listens (the CLI
// prints them). Throws kernex::error when it cannot listen.
int serve_http(const server_options& options, http_options http, int stop_fd,
               const std::function<void(const std::string& url, const std::string& token)>& on_listening);

}  // namespace kernex::mcp
