#include "wire/json_part.hpp"

namespace kernex::wire {

namespace {

using nlohmann::json;

struct too_deep {};

// The length of the well-formed UTF-8 sequence at text[i], or 0 with `bad`
// set to the length of the maximal ill-formed subpart there (Unicode 15,
// table 3-7).
std::size_t sequence_at(std::string_view text, std::size_t i, std::size_t& bad) noexcept {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
    const unsigned char lead = byte(0);
    if (lead < 0x80) return 1;
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // range of the second byte
    if (lead >= 0xc2 && lead <= 0xdf) len = 2;
    else if (lead == 0xe0) len = 3, lo = 0xa0;
    else if (lead == 0xed) len = 3, hi = 0x9f;  // no surrogates
    else if (lead >= 0xe1 && lead <= 0xef) len = 3;
    else if (lead == 0xf0) len = 4, lo = 0x90;
    else if (lead >= 0xf1 && lead <= 0xf3) len = 4;
    else if (lead == 0xf4) len = 4, hi = 0x8f;  // nothing above U+10FFFF
    else {
        bad = 1;
        return 0;
    }
    for (std::size_t k = 1; k < len; ++k) {
        const bool in_range = i + k < text.size() && byte(k) >= (k == 1 ? lo : 0x80) &&
                              byte(k) <= (k == 1 ? hi : 0xbf);
        if (!in_range) {
            bad = k;
            return 0;
        }
    }
    return len;
}

bool valid_utf8(std::string_view text) noexcept {
    std::size_t bad = 0;
    for (std::size_t i = 0; i < text.size();) {
        const std::size_t n = sequence_at(text, i, bad);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

json parse(std::string_view text, std::size_t max_depth) {
    // A document nesting d containers is at least 2d bytes long, so short
    // parts (every header, most contents) skip the slower callback parser.
    if (text.size() <= 2 * max_depth) return json::parse(text, nullptr, false);
    // The depth limit exists because nlohmann's copy, compare and dump
    // recurse: a hostile peer could otherwise overflow the stack of whoever
    // handles the content. Python's json stops near depth 1000 as well.
    const auto limit = [max_depth](int depth, json::parse_event_t event, json&) {
        const bool opens = event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
        if (opens && static_cast<std::size_t>(depth) >= max_depth) throw too_deep{};
        return true;
    };
    return json::parse(text, limit, false);
}

}  // namespace

std::string replace_invalid_utf8(std::string_view text) {
    static constexpr std::string_view replacement = "\xef\xbf\xbd";
    std::string out;
    out.reserve(text.size() + text.size() / 2);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < text.size();) {
        if (const std::size_t n = sequence_at(text, i, bad); n != 0) {
            out.append(text.substr(i, n));
            i += n;
        } else {
            out.append(replacement);
            i += bad;
        }
    }
    return out;
}

bool parse_object(std::string_view text, std::size_t max_depth, json& out) noexcept {
    try {
        out = parse(text, max_depth);
        if (out.is_discarded() && !valid_utf8(text)) out = parse(replace_invalid_utf8(text), max_depth);
        return out.is_object();
    } catch (...) {
        // Whatever a peer's bytes make the parser throw (depth, allocation),
        // the part is simply not acceptable JSON.
        return false;
    }
}

}  // namespace kernex::wire
