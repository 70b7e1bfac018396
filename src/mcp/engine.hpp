// The MCP server's tools (internal): their definitions (JSON Schemas in and
// out, annotations) and their calls, on executors made per call and on
// Jupyter kernel sessions kept in a multi_kernel_manager. Thread-safe: calls
// on different sessions run concurrently, calls on one session one at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernex/multi_kernel_manager.hpp"
#include "mcp/server.hpp"

namespace kernex::mcp {

// A JSON-RPC error a tool call answers with instead of a result (an unknown
// tool: -32602).
struct rpc_failure : std::runtime_error {
    rpc_failure(int code, const std::string& what) : std::runtime_error(what), code(code) {}
    int code;
};

// A call's place among the calls on one session, taken when the call
// arrives (engine::take_turn): calls on a session run in arrival order.
struct session_turn;

// One tool call in flight: how it reports progress and how it is cancelled.
class call_context {
public:
    // Its place in its session's queue (null: a call that needs none).
    std::shared_ptr<session_turn> turn;

    // Streamed output (set when the request carried a progressToken).
    std::function<void(std::string_view)> progress;

    // Sends a request (method, params) to the client and waits for its
    // response: the response's "result" object, or nullopt after saying why
    // in *why (an error response, no answer by the deadline, the call
    // cancelled, the client gone). Set by the connection; empty when it
    // cannot ask.
    std::function<std::optional<nlohmann::json>(const std::string& method, nlohmann::json params,
                                                std::chrono::milliseconds wait, std::string* why)>
        ask;

    // What cancel() runs while the call runs code; runs it at once when
    // cancel() came first. Cleared with nullptr.
    void on_cancel(std::function<void()> interrupt);
    // notifications/cancelled: interrupts the code (thread-safe).
    void cancel();
    bool cancelled() const noexcept { return m_cancelled.load(); }

private:
    std::mutex m_mutex;
    std::function<void()> m_interrupt;
    std::atomic<bool> m_cancelled{false};
};

class engine {
public:
    explicit engine(server_options options);
    ~engine();  // shutdown()
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    const server_options& options() const noexcept { return m_options; }

    // tools/list's result.
    nlohmann::json list_tools() const;
    // tools/call for a client (owner: sessions are visible to the client that
    // made them). Returns the CallToolResult: problems with the arguments and
    // failures of the code are results with isError. Throws rpc_failure for an
    // unknown tool.
    nlohmann::json call_tool(const std::string& owner, const std::string& name, const nlohmann::json& arguments,
                             call_context& ctx);

    // Called as a tools/call arrives, before its thread starts: queues a call
    // on a session (run_cell, restart_session) behind the calls on it that
    // arrived before. The turn is given up when the call ends.
    std::shared_ptr<session_turn> take_turn(const std::string& owner, const std::string& name,
                                            const nlohmann::json& arguments);

    // Shuts down the sessions owner made. noexcept.
    void close_owned(const std::string& owner) noexcept;
    // Shuts every session down; later calls fail. noexcept, idempotent.
    void shutdown() noexcept;

    struct session;
    struct session_use;
    friend struct session_turn;

private:
    nlohmann::json run_code(const nlohmann::json& args, call_context& ctx);
    nlohmann::json run_cell(const std::string& owner, const nlohmann::json& args, call_context& ctx);
    nlohmann::json start_session(const std::string& owner, const nlohmann::json& args);
    nlohmann::json list_sessions(const std::string& owner);
    nlohmann::json restart_session(const std::string& owner, const nlohmann::json& args, call_context& ctx);
    nlohmann::json close_session(const std::string& owner, const nlohmann::json& args);
    nlohmann::json list_kernels();

    std::shared_ptr<session> new_session(const std::string& owner, const std::string& id, const std::string& kernel);
    std::shared_ptr<session> find_session(const std::string& owner, const std::string& id);
    std::shared_ptr<session> default_session(const std::string& owner);
    void end_session(const std::shared_ptr<session>& s) noexcept;
    // Interrupts their cells, waits for the calls to end, shuts the kernels down in parallel.
    void end_sessions(const std::vector<std::shared_ptr<session>>& sessions) noexcept;
    void reap_idle(std::stop_token stop);

    server_options m_options;
    std::string m_executor_name;
    multi_kernel_manager m_kernels;
    mutable std::mutex m_mutex;
    std::condition_variable_any m_wake;
    std::map<std::string, std::shared_ptr<session>> m_sessions;  // by owner + '\n' + id
    int m_starting = 0;                                            // sessions being started
    bool m_stopped = false;
    std::mutex m_default_mutex;  // one default session started at a time
    // Calls queued on each session (owner + '\n' + id), by turn number, in
    // arrival order; guarded by m_mutex.
    std::map<std::string, std::deque<std::uint64_t>> m_turns;
    std::uint64_t m_next_turn = 0;
    std::condition_variable m_turn_changed;
    std::jthread m_reaper;
};

}  // namespace kernex::mcp
