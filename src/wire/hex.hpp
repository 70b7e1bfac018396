// Lower-case hex for HMAC signatures (internal to the wire module).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kernex::wire {

// Appends the lower-case hex of bytes to out.
inline void append_hex(std::string& out, const unsigned char* bytes, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    const std::size_t start = out.size();
    out.resize(start + 2 * n);
    char* p = out.data() + start;
    for (std::size_t i = 0; i < n; ++i) {
        *p++ = digits[bytes[i] >> 4];
        *p++ = digits[bytes[i] & 0x0f];
    }
}

// The value of a lower-case hex digit, or -1. Upper case is refused on
// purpose: Python's hexdigest() is lower case and jupyter_client compares the
// strings, so accepting "AB" would make one signature spellable 2^n ways and
// let a replay slip past a guard keyed on the text.
constexpr int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// hex_value by table, for every signature received: 0-15, or 0xff.
inline constexpr std::array<unsigned char, 256> hex_values = [] {
    std::array<unsigned char, 256> t{};
    for (int c = 0; c < 256; ++c) {
        const int v = hex_value(static_cast<char>(c));
        t[static_cast<std::size_t>(c)] = v < 0 ? 0xff : static_cast<unsigned char>(v);
    }
    return t;
}();

// Decodes 2*n lower-case hex characters of hex into out[0..n). Returns false
// (out partly written) when hex is not exactly 2*n such characters.
inline bool decode_hex(std::string_view hex, unsigned char* out, std::size_t n) noexcept {
    if (hex.size() != 2 * n) return false;
    unsigned bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const unsigned hi = hex_values[static_cast<unsigned char>(hex[2 * i])];
        const unsigned lo = hex_values[static_cast<unsigned char>(hex[2 * i + 1])];
        bad |= hi | lo;
        out[i] = static_cast<unsigned char>((hi << 4) | (lo & 0x0f));
    }
    return (bad & 0xf0) == 0;
}

// Whether every character of s is a lower-case hex digit.
inline bool is_lower_hex(std::string_view s) noexcept {
    unsigned bad = 0;
    for (char c : s) bad |= hex_values[static_cast<unsigned char>(c)];
    return (bad & 0xf0) == 0;
}

// The largest digest kernex signs with (SHA-512).
inline constexpr std::size_t max_digest_bytes = 64;
using digest_bytes = std::array<unsigned char, max_digest_bytes>;

}  // namespace kernex::wire
