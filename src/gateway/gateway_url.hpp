// Parsing a gateway's base URL (internal to the gateway module).
#pragma once

#include <string>
#include <string_view>

namespace kernex::gateway_detail {

struct gateway_url {
    bool tls = false;
    std::string host;        // without IPv6 brackets
    bool host_is_ip = false;
    std::string port;        // "80" / "443" when the URL has none
    std::string base_path;   // "" or "/base" (no trailing slash)
    std::string token;       // from a "?token=..." query, percent-decoded
    std::string display;     // scheme://host[:port][/base]: no user info, no query

    // The Host header's value: host[:port], IPv6 in brackets, the port left
    // out when it is the scheme's default.
    std::string host_header() const;
};

// Parses http://, https:// (and ws://, wss:// as the same) URLs. Throws
// kernex::error(invalid_argument) saying what is wrong and what is expected;
// the message never repeats a query (it may hold a token).
gateway_url parse_gateway_url(std::string_view url);

// Percent-encodes everything but RFC 3986's unreserved characters.
std::string percent_encode(std::string_view text);

}  // namespace kernex::gateway_detail
