// libFuzzer target for kernex mcp's JSON-RPC layer: the input is a byte
// stream as stdin would carry it, fed to the line splitter in two pieces
// (split where the first byte says), each line parsed as a message. Beyond
// "no crash" (parse_message is noexcept; nlohmann's recursive parser must
// never see deep nesting), it traps when a property that must hold for any
// input does not:
//  - the splitter never hands out a line longer than the cap, nor one with a
//    newline in it, and says how long every refused line was;
//  - a message is either classified or answered with an error response whose
//    code is a JSON-RPC one and whose id is null, a string or an integer;
//  - a classified request/notification has params that are an object and a
//    request an id; the error response always serialises to one line that
//    parses back.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mcp/json_rpc.hpp"

namespace {

void require(bool condition) {
    if (!condition) __builtin_trap();
}

constexpr std::size_t cap = 4096;  // small, so the limit itself is exercised

void check_line(std::string_view line) {
    using namespace kernex::mcp;
    require(line.size() <= cap);
    require(line.find('\n') == std::string_view::npos);
    parsed p = parse_message(line, cap);
    require(p.msg.has_value() == p.error_response.is_null());
    if (!p.msg) {
        const auto& e = p.error_response;
        require(e.at("jsonrpc") == "2.0");
        const auto& id = e.at("id");
        require(id.is_null() || id.is_string() || id.is_number_integer());
        const int code = e.at("error").at("code").get<int>();
        require(code == rpc_code::parse_error || code == rpc_code::invalid_request ||
                code == rpc_code::invalid_params || code == rpc_code::internal_error);
        const std::string text = serialize(e);
        require(text.find('\n') == std::string::npos);
        require(!nlohmann::json::parse(text, nullptr, false).is_discarded());
        return;
    }
    const message& m = *p.msg;
    if (m.kind == message_kind::response) {
        require(m.id.is_string() || m.id.is_number_integer());
        return;
    }
    require(m.params.is_object());
    if (m.kind == message_kind::request) require(m.id.is_string() || m.id.is_number_integer());
    // What a handler answers with must always serialise, whatever the id.
    const std::string answer = serialize(make_error(m.id, rpc_code::method_not_found, "method not found: " + m.method));
    require(answer.find('\n') == std::string::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace kernex::mcp;
    if (size == 0) return 0;
    const std::string_view all(reinterpret_cast<const char*>(data) + 1, size - 1);
    const std::size_t split = all.empty() ? 0 : data[0] % (all.size() + 1);
    line_splitter lines(cap);
    std::size_t seen = 0;
    const auto on_line = [&](std::string_view line) {
        seen += line.size() + 1;
        check_line(line);
    };
    const auto on_oversize = [&](std::size_t bytes) {
        require(bytes > cap);
        seen += bytes + 1;
    };
    lines.feed(all.substr(0, split), on_line, on_oversize);
    lines.feed(all.substr(split), on_line, on_oversize);
    require(seen <= all.size());
    return 0;
}
