// One MCP client's conversation (internal): the lifecycle state machine
// (initialize, then notifications/initialized, then the rest), protocol
// version negotiation, and dispatch of requests and notifications. Tool
// calls run on threads of their own, so a notifications/cancelled or
// another session's call is read while one runs; what they send goes to the
// outbox the request came with.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <optional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "mcp/engine.hpp"
#include "mcp/json_rpc.hpp"

namespace kernex::mcp {

// Where the messages answering one request go (stdout, an HTTP response).
// Called from several threads; implementations serialise.
class outbox {
public:
    virtual ~outbox() = default;
    virtual void send(const nlohmann::json& msg) = 0;
    // The request is done: its response was sent, or none will be (cancelled).
    virtual void finish() {}
};

inline constexpr const char* latest_protocol_version = "2025-11-25";
// Versions this server speaks, newest first.
bool supported_protocol_version(std::string_view version) noexcept;

class connection {
public:
    // owner: the name this client's sessions are filed under.
    connection(engine& e, std::string owner);
    ~connection();  // close()
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // Handles one message. Whatever answers it goes to out, now or later
    // (a tool call's thread), ending with out->finish().
    void handle(const message& msg, const std::shared_ptr<outbox>& out);
    // Parses bytes and handles them; a malformed message is answered with
    // its JSON-RPC error on out.
    void handle_bytes(std::string_view bytes, const std::shared_ptr<outbox>& out);

    bool initialized() const;
    std::string protocol_version() const;
    const std::string& owner() const noexcept { return m_owner; }

    // Cancels the calls in flight, waits for them, and shuts this client's
    // sessions down. noexcept, idempotent.
    void close() noexcept;

private:
    enum class state { awaiting_initialize, awaiting_initialized, ready, closed };

    nlohmann::json initialize(const message& msg);
    void call_tool(const message& msg, const std::shared_ptr<outbox>& out);
    void cancel(const nlohmann::json& params);
    void reap_finished();
    // A request of ours to the client, sent on out; waits for its response
    // (see call_context::ask).
    std::optional<nlohmann::json> ask(call_context& ctx, const std::shared_ptr<outbox>& out, const std::string& method,
                                      nlohmann::json params, std::chrono::milliseconds wait, std::string* why);

    // A request of ours awaiting the client's response.
    struct pending {
        std::optional<message> reply;
        bool gone = false;  // the call was cancelled or the connection closed
    };

    struct call {
        std::shared_ptr<call_context> ctx;
        std::shared_ptr<std::atomic<bool>> done;
        std::jthread thread;
    };

    engine& m_engine;
    std::string m_owner;
    mutable std::mutex m_mutex;
    state m_state = state::awaiting_initialize;
    std::string m_version;
    std::map<std::string, call> m_calls;  // by the request id's dump()
    std::map<std::string, std::shared_ptr<pending>> m_pending;  // our requests, by id's dump()
    std::uint64_t m_next_request = 0;
    std::condition_variable m_answered;  // with m_mutex: a reply came, or a wait was given up
    bool m_elicitation_form = false;     // the client declared elicitation (form mode)
};

}  // namespace kernex::mcp
