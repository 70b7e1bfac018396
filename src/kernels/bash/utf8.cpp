#include "utf8.hpp"

namespace kernex::bash {

namespace {

// Length of the sequence a lead byte announces, 0 for a byte that cannot
// start one (continuation bytes, overlong leads, out of range).
std::size_t sequence_length(unsigned char lead) noexcept {
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0;
}

bool is_continuation(unsigned char c) noexcept { return (c & 0xC0) == 0x80; }

// Length of the valid sequence at the start of `s`, 0 if invalid or cut short.
std::size_t valid_sequence(std::string_view s) noexcept {
    const auto lead = static_cast<unsigned char>(s[0]);
    const std::size_t n = sequence_length(lead);
    if (n == 0 || n > s.size()) return 0;
    for (std::size_t i = 1; i < n; ++i)
        if (!is_continuation(static_cast<unsigned char>(s[i]))) return 0;
    if (n >= 3) {
        const auto second = static_cast<unsigned char>(s[1]);
        // Reject overlong forms, UTF-16 surrogates and code points past U+10FFFF.
        if (lead == 0xE0 && second < 0xA0) return 0;
        if (lead == 0xED && second > 0x9F) return 0;
        if (lead == 0xF0 && second < 0x90) return 0;
        if (lead == 0xF4 && second > 0x8F) return 0;
    }
    return n;
}

}  // namespace

std::size_t complete_prefix_length(std::string_view bytes) noexcept {
    // Only the last three bytes can belong to an unfinished sequence.
    const std::size_t size = bytes.size();
    for (std::size_t back = 1; back <= 3 && back <= size; ++back) {
        const auto c = static_cast<unsigned char>(bytes[size - back]);
        if (is_continuation(c)) continue;
        const std::size_t n = sequence_length(c);
        return (n > back) ? size - back : size;
    }
    return size;
}

std::string sanitize(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    std::size_t i = 0;
    while (i < bytes.size()) {
        // ASCII runs (nearly all shell output) are taken whole.
        std::size_t run = i;
        while (run < bytes.size() && static_cast<unsigned char>(bytes[run]) < 0x80) ++run;
        out.append(bytes.substr(i, run - i));
        i = run;
        if (i == bytes.size()) break;
        const std::size_t n = valid_sequence(bytes.substr(i));
        if (n == 0) {
            out += "\xEF\xBF\xBD";
            ++i;
        } else {
            out.append(bytes.substr(i, n));
            i += n;
        }
    }
    return out;
}

std::size_t byte_offset(std::string_view text, std::size_t code_points) noexcept {
    std::size_t i = 0;
    for (std::size_t seen = 0; i < text.size() && seen < code_points; ++seen) {
        ++i;
        while (i < text.size() && is_continuation(static_cast<unsigned char>(text[i]))) ++i;
    }
    return i;
}

std::size_t code_point_count(std::string_view text, std::size_t bytes) noexcept {
    std::size_t count = 0;
    for (std::size_t i = 0; i < bytes && i < text.size(); ++i)
        if (!is_continuation(static_cast<unsigned char>(text[i]))) ++count;
    return count;
}

}  // namespace kernex::bash
