// gateway: kernels that run on a Jupyter Server, Kernel Gateway or
// Enterprise Gateway, reached over its REST API (kernelspecs, kernels:
// start, get, interrupt, restart, delete) and its websocket
// (/api/kernels/{id}/channels, JSON messages with a "channel" field).
// gateway_client makes the REST calls and opens the websocket as a
// kernex::transport, so kernel_client works on a remote kernel as it does
// over ZeroMQ. remote_kernel (remote_kernel.hpp) ties them together; with
// kernel_options::gateway set, kernel_manager::start uses it.
//
// Every request has a deadline (request_timeout). Failures are
// kernex::error: invalid_argument (a bad URL), gateway_error (unreachable,
// refused, TLS, an unexpected answer), permission_denied (401/403: the
// token), not_found (no such kernel or kernelspec), timeout.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernex/kernelspec.hpp"
#include "kernex/transport.hpp"

namespace kernex {

struct gateway_options {
    // http://host:port[/base_url] or https://...; a "?token=..." query (as
    // Jupyter prints its URL) is used as the token when token is empty.
    std::string url{};
    std::string token{};                                // sent as "Authorization: token <token>"
    std::map<std::string, std::string> headers{};       // added to every request and the websocket handshake
    bool verify_tls = true;                              // https: check the certificate and the host name
    std::optional<std::filesystem::path> ca_file{};     // https: trust these CAs (PEM) instead of the system's
    std::chrono::milliseconds request_timeout{30'000};  // each REST request and websocket (re)connection
    // While a request waits on a quiet websocket, how often the kernel is
    // asked for over REST (a kernel deleted by someone else, a server whose
    // socket hangs): a missing or dead kernel ends the wait.
    std::chrono::milliseconds liveness_period{3000};
    // Where notices go (the websocket dropped and was reconnected); default:
    // a line on stderr.
    std::function<void(const std::string&)> on_notice{};

    // The options from KERNEX_GATEWAY_URL and KERNEX_GATEWAY_TOKEN, or
    // nullopt when KERNEX_GATEWAY_URL is unset or empty.
    static std::optional<gateway_options> from_environment();
    // url and token as given (e.g. command-line flags), each empty one
    // taken from the environment as above; nullopt when there is no URL.
    static std::optional<gateway_options> from_arguments(const std::string& url, const std::string& token);
};

// A kernel as the server describes it (GET /api/kernels/{id}).
struct remote_kernel_model {
    std::string id;
    std::string name;              // its kernelspec
    std::string execution_state;   // "starting", "idle", "busy", "dead", ...
    std::string last_activity;
    int connections = 0;
    nlohmann::json raw = nlohmann::json::object();  // the whole model
};

// GET /api/kernelspecs: the server's default kernel and its kernelspecs
// (argv, env and resource_dir describe the server's side).
struct remote_kernelspecs {
    std::string default_name;
    std::vector<kernelspec> specs;  // sorted by name
    nlohmann::json raw = nlohmann::json::object();
};

class gateway_client {
public:
    // Checks the URL (throws kernex::error(invalid_argument) naming what is
    // wrong) and, for https, loads the CAs (throws (not_found) for a missing
    // ca_file). Connects nowhere yet.
    explicit gateway_client(gateway_options options);
    ~gateway_client();
    gateway_client(gateway_client&&) noexcept;
    gateway_client& operator=(gateway_client&&) noexcept;

    // GET /api/status (also proves the token): the server's answer.
    nlohmann::json status() const;
    remote_kernelspecs kernelspecs() const;
    // GET /api/kernelspecs/{name}; throws (not_found) listing the server's names.
    kernelspec kernelspec_named(const std::string& name) const;
    std::vector<remote_kernel_model> kernels() const;
    // POST /api/kernels: starts a kernel (env is passed on in the request, as
    // Enterprise Gateway expects). Waits up to timeout (default request_timeout).
    remote_kernel_model start_kernel(const std::string& kernel_name,
                                     const std::map<std::string, std::string>& env = {},
                                     std::optional<std::chrono::milliseconds> timeout = std::nullopt) const;
    // GET /api/kernels/{id}; throws (not_found) when there is none.
    remote_kernel_model kernel(const std::string& kernel_id) const;
    void interrupt_kernel(const std::string& kernel_id) const;
    // POST .../restart: returns once the server has restarted it.
    remote_kernel_model restart_kernel(const std::string& kernel_id,
                                       std::optional<std::chrono::milliseconds> timeout = std::nullopt) const;
    // DELETE /api/kernels/{id}; throws (not_found) when there is none.
    void delete_kernel(const std::string& kernel_id) const;

    // Opens the kernel's websocket (session_id = session) as a transport for
    // kernel_client. Throws like the REST calls (404: not_found).
    std::unique_ptr<transport> connect(const std::string& kernel_id, const std::string& session,
                                       std::optional<std::chrono::milliseconds> timeout = std::nullopt) const;

    const gateway_options& options() const noexcept;
    // The URL without its query or user info (safe to print: no token).
    const std::string& display_url() const noexcept;

    struct impl;

private:
    std::shared_ptr<impl> m_impl;
};

}  // namespace kernex
