// JSON-RPC 2.0 framing for the MCP server (internal to src/mcp): one message
// of bytes in, a classified message or the error response to send back out.
// Verify before you parse: a message larger than the cap or nested deeper
// than max_depth is refused before nlohmann::json sees it (its parser
// recurses), and batches (JSON arrays) are refused, as MCP 2025-06-18 and
// later ask.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kernex::mcp {

namespace rpc_code {
inline constexpr int parse_error = -32700;
inline constexpr int invalid_request = -32600;
inline constexpr int method_not_found = -32601;
inline constexpr int invalid_params = -32602;
inline constexpr int internal_error = -32603;
}  // namespace rpc_code

inline constexpr std::size_t default_max_message_bytes = std::size_t{8} << 20;
inline constexpr int max_depth = 64;

enum class message_kind { request, notification, response };

struct message {
    message_kind kind = message_kind::request;
    nlohmann::json id;           // request and response: a string or an integer
    std::string method;          // request and notification
    nlohmann::json params = nlohmann::json::object();  // request and notification: always an object
    nlohmann::json result;       // response: result, or
    nlohmann::json error;        // response: error (an object)
};

// What parse_message gives back: a message, or the error response to send
// (its id is the request's when it could be read, else null).
struct parsed {
    std::optional<message> msg;
    nlohmann::json error_response;  // set when msg is empty
};

// Classifies one JSON-RPC message. Never throws.
parsed parse_message(std::string_view bytes, std::size_t max_bytes = default_max_message_bytes) noexcept;

// The deepest nesting of arrays and objects in text (strings skipped), or
// max + 1 as soon as it passes max.
int nesting_depth(std::string_view text, int max) noexcept;

nlohmann::json make_error(const nlohmann::json& id, int code, const std::string& text,
                          const nlohmann::json& data = nullptr);
nlohmann::json make_result(const nlohmann::json& id, nlohmann::json result);
nlohmann::json make_notification(const std::string& method, nlohmann::json params);

// Splits a byte stream into newline-delimited messages (stdio) with memory
// bounded by max_bytes: the rest of a longer line is read and dropped, and
// on_oversize gets its length at its newline. A trailing '\r' is removed;
// blank lines are skipped.
class line_splitter {
public:
    explicit line_splitter(std::size_t max_bytes) : m_max(max_bytes) {}
    void feed(std::string_view chunk, const std::function<void(std::string_view line)>& on_line,
              const std::function<void(std::size_t bytes)>& on_oversize);

private:
    std::size_t m_max;
    std::string m_line;
    bool m_discarding = false;
    std::size_t m_discarded = 0;
};

// One line of JSON (no newline inside: strings are escaped); invalid UTF-8
// from code's output is replaced by U+FFFD instead of throwing.
std::string serialize(const nlohmann::json& msg);

}  // namespace kernex::mcp
