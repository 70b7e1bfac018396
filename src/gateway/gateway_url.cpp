// Base URL parsing for the gateway module: scheme, host (names, IPv4,
// bracketed IPv6), port, base path, and a token in the query.
#include "gateway/gateway_url.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

#include "kernex/error.hpp"

namespace kernex::gateway_detail {

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string percent_decode(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size()) {
            int hi = hex_value(text[i + 1]), lo = hex_value(text[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out.push_back(static_cast<char>(hi * 16 + lo));
                i += 2;
                continue;
            }
        }
        out.push_back(text[i] == '+' ? ' ' : text[i]);
    }
    return out;
}

[[noreturn]] void bad(std::string_view shown, const std::string& why) {
    throw error(errc::invalid_argument,
                "gateway URL '" + std::string(shown) + "' is not valid: " + why +
                    "; expected http://HOST:PORT[/BASE] or https://HOST[:PORT][/BASE], e.g. http://127.0.0.1:8888");
}

}  // namespace

std::string percent_encode(std::string_view text) {
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(digits[c >> 4]);
            out.push_back(digits[c & 15]);
        }
    }
    return out;
}

std::string gateway_url::host_header() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    if (port != (tls ? "443" : "80")) h += ":" + port;
    return h;
}

gateway_url parse_gateway_url(std::string_view url) {
    // Never show a query in a message: it may carry the token.
    std::string_view shown = url.substr(0, std::min(url.find('?'), url.size()));
    if (url.empty()) bad(shown, "it is empty");
    for (unsigned char c : url)
        if (c <= ' ' || c == 0x7f) bad(shown, "it contains spaces or control characters");
    gateway_url out;
    auto scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos) bad(shown, "it has no scheme");
    auto scheme = lower(url.substr(0, scheme_end));
    if (scheme == "http" || scheme == "ws")
        out.tls = false;
    else if (scheme == "https" || scheme == "wss")
        out.tls = true;
    else
        bad(shown, "the scheme '" + scheme + "' is not http or https");
    auto rest = url.substr(scheme_end + 3);
    std::string_view query;
    if (auto q = rest.find('?'); q != std::string_view::npos) {
        query = rest.substr(q + 1);
        rest = rest.substr(0, q);
    }
    if (auto f = rest.find('#'); f != std::string_view::npos) rest = rest.substr(0, f);
    if (auto f = query.find('#'); f != std::string_view::npos) query = query.substr(0, f);
    auto slash = rest.find('/');
    auto authority = rest.substr(0, slash);
    auto path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
    if (auto at = authority.rfind('@'); at != std::string_view::npos) authority = authority.substr(at + 1);
    if (authority.empty()) bad(shown, "it has no host");
    std::string_view port;
    if (authority.front() == '[') {
        auto close = authority.find(']');
        if (close == std::string_view::npos) bad(shown, "an IPv6 address lacks its closing ']'");
        out.host = std::string(authority.substr(1, close - 1));
        auto after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') bad(shown, "unexpected text after the IPv6 address");
            port = after.substr(1);
        }
        in6_addr a6{};
        if (::inet_pton(AF_INET6, out.host.c_str(), &a6) != 1) bad(shown, "'" + out.host + "' is not an IPv6 address");
        out.host_is_ip = true;
    } else {
        auto colon = authority.rfind(':');
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
            authority = authority.substr(0, colon);
        }
        out.host = lower(authority);
        if (out.host.empty()) bad(shown, "it has no host");
        for (unsigned char c : out.host)
            if (!(std::isalnum(c) || c == '-' || c == '.' || c == '_')) bad(shown, "the host has a character that is not allowed");
        in_addr a4{};
        out.host_is_ip = ::inet_pton(AF_INET, out.host.c_str(), &a4) == 1;
    }
    if (port.empty()) {
        out.port = out.tls ? "443" : "80";
    } else {
        if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); }))
            bad(shown, "the port '" + std::string(port) + "' is not a number");
        int p = std::stoi(std::string(port));
        if (p < 1 || p > 65535) bad(shown, "the port " + std::string(port) + " is out of range");
        out.port = std::to_string(p);
    }
    std::string base(path);
    while (!base.empty() && base.back() == '/') base.pop_back();
    out.base_path = base;
    // A URL as Jupyter prints it: http://host:port/?token=...
    while (!query.empty()) {
        auto amp = query.find('&');
        auto pair = query.substr(0, amp);
        if (pair.rfind("token=", 0) == 0) out.token = percent_decode(pair.substr(6));
        if (amp == std::string_view::npos) break;
        query = query.substr(amp + 1);
    }
    out.display = std::string(out.tls ? "https" : "http") + "://" + out.host_header() + out.base_path;
    return out;
}

}  // namespace kernex::gateway_detail
