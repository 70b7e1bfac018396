#include "mcp/json_rpc.hpp"

#include <utility>

namespace kernex::mcp {

int nesting_depth(std::string_view text, int max) noexcept {
    int depth = 0;
    int deepest = 0;
    bool in_string = false;
    bool escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > deepest) deepest = depth;
            if (deepest > max) return max + 1;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return deepest;
}

nlohmann::json make_error(const nlohmann::json& id, int code, const std::string& text, const nlohmann::json& data) {
    nlohmann::json err = {{"code", code}, {"message", text}};
    if (!data.is_null()) err["data"] = data;
    return {{"jsonrpc", "2.0"}, {"id", id}, {"error", std::move(err)}};
}

nlohmann::json make_result(const nlohmann::json& id, nlohmann::json result) {
    return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

nlohmann::json make_notification(const std::string& method, nlohmann::json params) {
    return {{"jsonrpc", "2.0"}, {"method", method}, {"params", std::move(params)}};
}

std::string serialize(const nlohmann::json& msg) {
    return msg.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void line_splitter::feed(std::string_view chunk, const std::function<void(std::string_view)>& on_line,
                         const std::function<void(std::size_t)>& on_oversize) {
    while (!chunk.empty()) {
        const auto nl = chunk.find('\n');
        const std::string_view piece = chunk.substr(0, nl);
        if (m_discarding) {
            m_discarded += piece.size();
        } else if (m_line.size() + piece.size() > m_max) {
            m_discarding = true;
            m_discarded = m_line.size() + piece.size();
            std::string().swap(m_line);
        } else {
            m_line.append(piece);
        }
        if (nl == std::string_view::npos) return;
        chunk.remove_prefix(nl + 1);
        if (m_discarding) {
            m_discarding = false;
            on_oversize(std::exchange(m_discarded, 0));
            continue;
        }
        if (!m_line.empty() && m_line.back() == '\r') m_line.pop_back();
        if (m_line.find_first_not_of(" \t\r") != std::string::npos) on_line(m_line);
        m_line.clear();
    }
}

namespace {

bool valid_id(const nlohmann::json& id) { return id.is_string() || id.is_number_integer(); }

parsed refuse(const nlohmann::json& id, int code, const std::string& text) {
    return {std::nullopt, make_error(id, code, text)};
}

}  // namespace

parsed parse_message(std::string_view bytes, std::size_t max_bytes) noexcept {
    try {
        if (bytes.size() > max_bytes)
            return refuse(nullptr, rpc_code::invalid_request,
                          "message of " + std::to_string(bytes.size()) + " bytes refused: the limit is " +
                              std::to_string(max_bytes) + " bytes");
        if (nesting_depth(bytes, max_depth) > max_depth)
            return refuse(nullptr, rpc_code::invalid_request,
                          "message nested deeper than " + std::to_string(max_depth) + " levels refused");
        nlohmann::json j = nlohmann::json::parse(bytes, nullptr, false);
        if (j.is_discarded()) return refuse(nullptr, rpc_code::parse_error, "parse error: not valid JSON");
        if (j.is_array())
            return refuse(nullptr, rpc_code::invalid_request,
                          "JSON-RPC batches are not supported (MCP 2025-06-18 and later): send one message at a time");
        if (!j.is_object()) return refuse(nullptr, rpc_code::invalid_request, "a JSON-RPC message is a JSON object");

        const auto id_it = j.find("id");
        const bool has_id = id_it != j.end();
        const nlohmann::json id = has_id && valid_id(*id_it) ? *id_it : nlohmann::json(nullptr);
        const auto version = j.find("jsonrpc");
        if (version == j.end() || *version != "2.0")
            return refuse(id, rpc_code::invalid_request, "\"jsonrpc\": \"2.0\" is missing");
        if (has_id && !valid_id(*id_it))
            return refuse(nullptr, rpc_code::invalid_request, "\"id\" must be a string or an integer");

        message m;
        const auto method = j.find("method");
        if (method != j.end()) {
            if (!method->is_string()) return refuse(id, rpc_code::invalid_request, "\"method\" must be a string");
            m.kind = has_id ? message_kind::request : message_kind::notification;
            m.method = method->get<std::string>();
            m.id = id;
            const auto params = j.find("params");
            if (params != j.end()) {
                if (!params->is_object()) return refuse(id, rpc_code::invalid_params, "\"params\" must be an object");
                m.params = std::move(*params);
            }
            return {std::move(m), nullptr};
        }
        const auto result = j.find("result");
        const auto err = j.find("error");
        if (has_id && (result != j.end()) != (err != j.end())) {
            m.kind = message_kind::response;
            m.id = id;
            if (result != j.end()) m.result = std::move(*result);
            else if (err->is_object()) m.error = std::move(*err);
            else return refuse(id, rpc_code::invalid_request, "\"error\" must be an object");
            return {std::move(m), nullptr};
        }
        return refuse(id, rpc_code::invalid_request, "neither a request, a notification nor a response");
    } catch (const std::exception&) {
        // Only allocation can throw here; the message is still answered.
        return {std::nullopt, nlohmann::json{{"jsonrpc", "2.0"},
                                             {"id", nullptr},
                                             {"error", {{"code", rpc_code::internal_error}, {"message", "internal error"}}}}};
    }
}

}  // namespace kernex::mcp
