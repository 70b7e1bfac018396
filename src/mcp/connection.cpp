#include "mcp/connection.hpp"

#include <vector>

#include "kernex/error.hpp"

namespace kernex::mcp {

using json = nlohmann::json;

bool supported_protocol_version(std::string_view version) noexcept {
    return version == "2025-11-25" || version == "2025-06-18";
}

connection::connection(engine& e, std::string owner) : m_engine(e), m_owner(std::move(owner)) {}

connection::~connection() { close(); }

bool connection::initialized() const {
    std::lock_guard lock(m_mutex);
    return m_state == state::awaiting_initialized || m_state == state::ready;
}

std::string connection::protocol_version() const {
    std::lock_guard lock(m_mutex);
    return m_version;
}

void connection::handle_bytes(std::string_view bytes, const std::shared_ptr<outbox>& out) {
    parsed p = parse_message(bytes, m_engine.options().max_message_bytes);
    if (!p.msg) {
        out->send(p.error_response);
        out->finish();
        return;
    }
    handle(*p.msg, out);
}

json connection::initialize(const message& msg) {
    const auto& params = msg.params;
    const auto version = params.find("protocolVersion");
    if (version == params.end() || !version->is_string())
        throw rpc_failure(rpc_code::invalid_params, "initialize needs params.protocolVersion (a string)");
    if (const auto caps = params.find("capabilities"); caps != params.end() && !caps->is_object())
        throw rpc_failure(rpc_code::invalid_params, "params.capabilities must be an object");
    // The client's version when we speak it, else our latest: the client
    // then decides whether it can go on.
    const std::string requested = version->get<std::string>();
    const std::string chosen = supported_protocol_version(requested) ? requested : latest_protocol_version;
    // Form-mode elicitation: {} (2025-06-18, and 2025-11-25's backwards-
    // compatible form) or {"form": {...}}; {"url": {}} alone cannot show code.
    bool form = false;
    if (const auto caps = params.find("capabilities"); caps != params.end()) {
        const auto e = caps->find("elicitation");
        form = e != caps->end() && e->is_object() && (e->empty() || (e->contains("form") && !(*e)["form"].is_null()));
    }
    // --confirm asks the user before every run: a client that cannot be
    // asked must not get a server that runs code unasked.
    if (m_engine.options().confirm && !form)
        throw rpc_failure(rpc_code::invalid_params,
                          "this server runs with --confirm: it asks the user, through MCP elicitation, before it runs "
                          "any code, and this client did not declare the elicitation capability (form mode) in "
                          "initialize. Use a client that supports elicitation, or start kernex mcp without --confirm");
    {
        std::lock_guard lock(m_mutex);
        m_version = chosen;
        m_state = state::awaiting_initialized;
        m_elicitation_form = form;
    }
    return {{"protocolVersion", chosen},
            {"capabilities", {{"tools", {{"listChanged", false}}}}},
            {"serverInfo", {{"name", "kernex"}, {"title", "kernex code execution"}, {"version", "0.1.0"}}},
            {"instructions",
             "run_code runs one block of code statelessly; run_cell runs code in a stateful Jupyter kernel session "
             "(variables persist between calls on the same session). Each tool's description gives its languages, "
             "limits and work dir."}};
}

void connection::handle(const message& msg, const std::shared_ptr<outbox>& out) {
    if (msg.kind == message_kind::response) {
        // To a request of ours (elicitation/create) if one waits for it;
        // else there is nothing to route it to.
        {
            std::lock_guard lock(m_mutex);
            const auto it = m_pending.find(msg.id.dump());
            if (it != m_pending.end() && !it->second->reply) it->second->reply = msg;
        }
        m_answered.notify_all();
        out->finish();
        return;
    }
    const bool request = msg.kind == message_kind::request;
    auto answer = [&](json result) {
        if (request) out->send(make_result(msg.id, std::move(result)));
        out->finish();
    };
    auto refuse = [&](int code, const std::string& text) {
        if (request) out->send(make_error(msg.id, code, text));
        out->finish();
    };

    state now;
    {
        std::lock_guard lock(m_mutex);
        now = m_state;
    }
    if (now == state::closed) return refuse(rpc_code::invalid_request, "the connection is closed");

    if (!request) {
        if (msg.method == "notifications/initialized") {
            std::lock_guard lock(m_mutex);
            if (m_state == state::awaiting_initialized) m_state = state::ready;
        } else if (msg.method == "notifications/cancelled") {
            cancel(msg.params);
        }
        // Other notifications (progress, roots changed, ...) need nothing from us.
        out->finish();
        return;
    }

    try {
        if (msg.method == "ping") return answer(json::object());
        if (msg.method == "initialize") {
            if (now != state::awaiting_initialize)
                return refuse(rpc_code::invalid_request, "already initialized: initialize is sent once per connection");
            return answer(initialize(msg));
        }
        if (now == state::awaiting_initialize)
            return refuse(rpc_code::invalid_request,
                          "not initialized: the first request must be initialize (then notifications/initialized)");
        if (msg.method == "tools/list") return answer(m_engine.list_tools());
        if (msg.method == "tools/call") return call_tool(msg, out);
        return refuse(rpc_code::method_not_found, "method not found: " + msg.method);
    } catch (const rpc_failure& e) {
        return refuse(e.code, e.what());
    } catch (const std::exception& e) {
        return refuse(rpc_code::internal_error, std::string("internal error: ") + e.what());
    }
}

void connection::reap_finished() {
    // Joined outside the lock: a finishing call may be sending.
    std::vector<std::jthread> finished;
    {
        std::lock_guard lock(m_mutex);
        for (auto it = m_calls.begin(); it != m_calls.end();)
            if (it->second.done->load()) {
                finished.push_back(std::move(it->second.thread));
                it = m_calls.erase(it);
            } else {
                ++it;
            }
    }
}

void connection::call_tool(const message& msg, const std::shared_ptr<outbox>& out) {
    const auto name = msg.params.find("name");
    if (name == msg.params.end() || !name->is_string())
        throw rpc_failure(rpc_code::invalid_params, "tools/call needs params.name (a string)");
    json arguments = msg.params.value("arguments", json::object());
    if (arguments.is_null()) arguments = json::object();

    auto ctx = std::make_shared<call_context>();
    if (const auto meta = msg.params.find("_meta"); meta != msg.params.end() && meta->is_object()) {
        const auto token = meta->find("progressToken");
        if (token != meta->end() && (token->is_string() || token->is_number_integer())) {
            auto sent = std::make_shared<std::uint64_t>(0);
            ctx->progress = [out, token = *token, sent](std::string_view text) {
                if (text.empty()) return;
                *sent += text.size();  // progress must increase with every notification
                out->send(make_notification("notifications/progress", {{"progressToken", token},
                                                                       {"progress", *sent},
                                                                       {"message", std::string(text)}}));
            };
        }
    }

    bool form;
    {
        std::lock_guard lock(m_mutex);
        form = m_elicitation_form;
    }
    if (form)
        ctx->ask = [this, out, raw = ctx.get()](const std::string& method, json params, std::chrono::milliseconds wait,
                                               std::string* why) {
            return ask(*raw, out, method, std::move(params), wait, why);
        };

    reap_finished();
    const std::string key = msg.id.dump();
    std::lock_guard lock(m_mutex);
    if (m_state == state::closed) throw rpc_failure(rpc_code::invalid_request, "the connection is closed");
    if (m_calls.contains(key))
        throw rpc_failure(rpc_code::invalid_request, "request id " + key + " is already in use by a running call");
    if (static_cast<int>(m_calls.size()) >= m_engine.options().max_calls)
        throw rpc_failure(rpc_code::invalid_request,
                          "too many tool calls in flight (" + std::to_string(m_engine.options().max_calls) +
                              "): wait for one to end");
    // Its place on its session, taken here where calls arrive one by one.
    ctx->turn = m_engine.take_turn(m_owner, name->get<std::string>(), arguments);
    auto done = std::make_shared<std::atomic<bool>>(false);
    call c{ctx, done, {}};
    c.thread = std::jthread([this, ctx, done, out, id = msg.id, tool = name->get<std::string>(),
                             arguments = std::move(arguments)] {
        json reply;
        try {
            reply = make_result(id, m_engine.call_tool(m_owner, tool, arguments, *ctx));
        } catch (const rpc_failure& e) {
            reply = make_error(id, e.code, e.what());
        } catch (const std::exception& e) {
            reply = make_error(id, rpc_code::internal_error, std::string("internal error: ") + e.what());
        }
        // A cancelled request gets no response (the client has stopped waiting).
        if (!ctx->cancelled()) out->send(reply);
        out->finish();
        done->store(true);
    });
    m_calls.emplace(key, std::move(c));
}

void connection::cancel(const json& params) {
    const auto id = params.find("requestId");
    if (id == params.end()) return;
    std::shared_ptr<call_context> ctx;
    {
        std::lock_guard lock(m_mutex);
        const auto it = m_calls.find(id->dump());
        if (it == m_calls.end()) return;  // finished already, or never ours
        ctx = it->second.ctx;
    }
    ctx->cancel();
}

std::optional<json> connection::ask(call_context& ctx, const std::shared_ptr<outbox>& out, const std::string& method,
                                    json params, std::chrono::milliseconds wait, std::string* why) {
    auto p = std::make_shared<pending>();
    json id;
    {
        std::lock_guard lock(m_mutex);
        if (m_state == state::closed) {
            *why = "the client is gone";
            return std::nullopt;
        }
        id = "kernex-" + std::to_string(++m_next_request);
        m_pending[id.dump()] = p;
    }
    // notifications/cancelled for the tool call (or the connection closing) ends the wait.
    ctx.on_cancel([this, p] {
        {
            std::lock_guard lock(m_mutex);
            p->gone = true;
        }
        m_answered.notify_all();
    });
    out->send({{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}});
    bool gone = false, answered = false;
    std::optional<message> reply;
    {
        std::unique_lock lock(m_mutex);
        m_answered.wait_for(lock, wait, [&] { return p->reply.has_value() || p->gone; });
        m_pending.erase(id.dump());
        reply = std::move(p->reply);
        gone = p->gone;
        answered = reply.has_value();
    }
    ctx.on_cancel(nullptr);
    if (!answered) {
        *why = gone ? "the call was cancelled" : "no answer within " + std::to_string(wait.count() / 1000) + " s";
        // The client may still show the question: tell it we stopped waiting.
        out->send(make_notification("notifications/cancelled", {{"requestId", id}, {"reason", *why}}));
        return std::nullopt;
    }
    if (!reply->error.is_null()) {
        *why = "the client answered " + method + " with an error: " +
               (reply->error.is_object() ? reply->error.value("message", reply->error.dump()) : reply->error.dump());
        return std::nullopt;
    }
    return reply->result;
}

void connection::close() noexcept {
    std::map<std::string, call> calls;
    {
        std::lock_guard lock(m_mutex);
        if (m_state == state::closed) return;
        m_state = state::closed;
        calls.swap(m_calls);
    }
    for (auto& [key, c] : calls) c.ctx->cancel();
    calls.clear();  // joins
    m_engine.close_owned(m_owner);
}

}  // namespace kernex::mcp
