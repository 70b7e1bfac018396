#include "wire/json_text.hpp"

#include "kernex/error.hpp"
#include "wire/header_fields.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <charconv>
#include <clocale>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <locale.h>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kernex::wire {

namespace {

using nlohmann::json;

constexpr std::string_view replacement_character = "\xef\xbf\xbd";

// Strings at least this long reserve room for what remains of the text at
// once (an upper bound of their length; pages never written cost nothing),
// instead of doubling and copying themselves on the way.
constexpr std::size_t reserve_after = 1 << 20;
// With release_read_pages, how much of a string is copied between two
// hand-backs of the pages read.
constexpr std::size_t release_step = 4 << 20;

// Whether byte c ends a plain run of a string: '"', '\\', a control character,
// or the start of a multi-byte UTF-8 sequence (checked before it is taken).
constexpr bool stops_run(unsigned char c) noexcept { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80; }

// Returns the end of the plain run of a string's text at p, up to limit:
// bytes that need no escaping or unescaping (neither '"', '\\' nor control
// characters), and well-formed multi-byte UTF-8 sequences, which may end
// past limit but not past end. Sixteen bytes at a time where SSE2 is there.
const char* scan_plain(const char* p, const char* limit, const char* end) noexcept {
    for (;;) {
#if defined(__SSE2__)
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
        while (limit - p >= 16) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            // Signed: bytes from 0x80 up are negative, so below 0x20 too.
            const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                             _mm_cmplt_epi8(v, space));
            if (const int mask = _mm_movemask_epi8(hit); mask != 0) {
                p += __builtin_ctz(static_cast<unsigned>(mask));
                break;
            }
            p += 16;
        }
#endif
        while (p < limit && !stops_run(static_cast<unsigned char>(*p))) ++p;
        if (p >= limit || static_cast<unsigned char>(*p) < 0x80) return p;
        // Non-ASCII: part of the run when well-formed.
        std::size_t bad = 0;
        const std::size_t n = utf8_sequence_at({p, static_cast<std::size_t>(end - p)}, 0, bad);
        if (n == 0) return p;
        p += n;
    }
}

class parser {
public:
    parser(std::string_view text, const json_parse_options& options)
        : m_begin(text.data()), m_p(text.data()), m_end(text.data() + text.size()), m_options(options) {
        if (options.release_read_pages) {
            m_page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
            // From the page after the start's (which may hold the
            // allocator's header of the block).
            m_released = round_down(reinterpret_cast<std::uintptr_t>(m_begin), m_page) + m_page;
            m_release_at = text.size() > release_step ? m_begin + release_step : m_end;
        }
    }

    bool parse(json& out) {
        skip_bom();
        if (!parse_value(out, 0)) return false;
        skip_space();
        return m_p == m_end;
    }

    // Reads a message header's object into h (see read_header).
    header_read parse_header(message_header& h) {
        for (const auto& [name, field] : header_fields) (h.*field).clear();
        skip_bom();
        skip_space();
        if (m_p == m_end || *m_p != '{' || m_options.max_depth == 0) return header_read::bad_json;
        ++m_p;
        skip_space();
        bool bad[header_field_count] = {};
        if (m_p != m_end && *m_p == '}') {
            ++m_p;
        } else {
            std::string key;
            json other;
            for (;;) {
                if (m_p == m_end || *m_p != '"') return header_read::bad_json;
                ++m_p;
                key.clear();
                if (!read_string(key)) return header_read::bad_json;
                skip_space();
                if (m_p == m_end || *m_p != ':') return header_read::bad_json;
                ++m_p;
                skip_space();
                std::size_t f = 0;
                while (f < header_field_count && key != header_fields[f].first) ++f;
                if (f < header_field_count && m_p != m_end && *m_p == '"') {
                    // The last of a repeated key counts, as in parse_json.
                    ++m_p;
                    std::string& value = h.*header_fields[f].second;
                    value.clear();
                    if (!read_string(value)) return header_read::bad_json;
                    bad[f] = false;
                } else {
                    if (!parse_value(other, 1)) return header_read::bad_json;
                    if (f < header_field_count) bad[f] = true;
                }
                skip_space();
                if (m_p == m_end) return header_read::bad_json;
                const char c = *m_p++;
                if (c == '}') break;
                if (c != ',') return header_read::bad_json;
                skip_space();
            }
        }
        skip_space();
        if (m_p != m_end) return header_read::bad_json;
        for (bool b : bad)
            if (b) return header_read::bad_field;
        return header_read::ok;
    }

private:
    // A byte order mark at the start is skipped, as nlohmann skips it.
    void skip_bom() noexcept {
        if (m_end - m_p >= 3 && std::memcmp(m_p, "\xef\xbb\xbf", 3) == 0) m_p += 3;
    }

    // Reads one value into out, up to its end; depth: the containers it is in.
    bool parse_value(json& out, std::size_t depth) {
        std::vector<json*> open;  // the containers being filled, innermost last
        json* target = &out;      // where the next value goes
        for (;;) {
            // A value into *target.
            skip_space();
            if (m_p == m_end) return false;
            switch (*m_p) {
            case '{':
                if (depth + open.size() >= m_options.max_depth) return false;
                *target = json::object();
                ++m_p;
                skip_space();
                if (m_p != m_end && *m_p == '}') {
                    ++m_p;
                    break;
                }
                open.push_back(target);
                if (!(target = member_of(*target))) return false;
                continue;
            case '[':
                if (depth + open.size() >= m_options.max_depth) return false;
                *target = json::array();
                ++m_p;
                skip_space();
                if (m_p != m_end && *m_p == ']') {
                    ++m_p;
                    break;
                }
                open.push_back(target);
                target = &target->get_ref<json::array_t&>().emplace_back();
                continue;
            case '"': {
                ++m_p;
                std::string s;
                if (!read_string(s)) return false;
                *target = std::move(s);
                break;
            }
            case 't':
                if (!literal("true")) return false;
                *target = true;
                break;
            case 'f':
                if (!literal("false")) return false;
                *target = false;
                break;
            case 'n':
                if (!literal("null")) return false;
                *target = nullptr;
                break;
            default:
                if (!read_number(*target)) return false;
                break;
            }
            // After a value: the next member or element, or the ends of
            // the containers it closes.
            for (;;) {
                if (open.empty()) return true;
                skip_space();
                if (m_p == m_end) return false;
                json& container = *open.back();
                const char c = *m_p++;
                if (container.is_object()) {
                    if (c == '}') {
                        open.pop_back();
                        continue;
                    }
                    if (c != ',') return false;
                    skip_space();
                    if (!(target = member_of(container))) return false;
                } else {
                    if (c == ']') {
                        open.pop_back();
                        continue;
                    }
                    if (c != ',') return false;
                    target = &container.get_ref<json::array_t&>().emplace_back();
                }
                break;
            }
        }
    }

    static std::uintptr_t round_down(std::uintptr_t a, std::uintptr_t page) noexcept { return a & ~(page - 1); }

    void skip_space() noexcept {
        while (m_p != m_end && (*m_p == ' ' || *m_p == '\n' || *m_p == '\r' || *m_p == '\t')) ++m_p;
    }

    bool literal(std::string_view word) noexcept {
        if (static_cast<std::size_t>(m_end - m_p) < word.size() || std::memcmp(m_p, word.data(), word.size()) != 0)
            return false;
        m_p += word.size();
        return true;
    }

    // Reads `"key" :` of an object (at its first quote) and returns where the
    // member's value goes (a repeated key's earlier value is replaced).
    json* member_of(json& object) {
        if (m_p == m_end || *m_p != '"') return nullptr;
        ++m_p;
        std::string key;
        if (!read_string(key)) return nullptr;
        skip_space();
        if (m_p == m_end || *m_p != ':') return nullptr;
        ++m_p;
        return &object.get_ref<json::object_t&>()[std::move(key)];
    }

    // Hands back the whole pages of text before m_p not yet handed back.
    void release_read() noexcept {
        m_release_at = m_p + release_step;
        // Never the page of the text's last byte (see json_parse_options).
        const std::uintptr_t last = round_down(reinterpret_cast<std::uintptr_t>(m_end - 1), m_page);
        const std::uintptr_t stop = std::min(round_down(reinterpret_cast<std::uintptr_t>(m_p), m_page), last);
        if (stop <= m_released) return;
        ::madvise(reinterpret_cast<void*>(m_released), stop - m_released, MADV_DONTNEED);
        m_released = stop;
    }

    // Reads a string's characters after its opening quote, through the
    // closing one, into out.
    bool read_string(std::string& out) {
        bool reserved = false;
        for (;;) {
            const char* run = m_p;
            // A long run pauses where the pages read are next handed back.
            const char* limit = m_options.release_read_pages && m_release_at < m_end ? m_release_at : m_end;
            m_p = scan_plain(m_p, limit, m_end);
            const auto n = static_cast<std::size_t>(m_p - run);
            if (n > 0) {
                if (!reserved && out.size() + n >= reserve_after) {
                    out.reserve(out.size() + n + static_cast<std::size_t>(m_end - m_p));
                    reserved = true;
                }
                out.append(run, n);
            }
            if (m_options.release_read_pages && m_p >= m_release_at) release_read();
            if (m_p >= m_end) return false;  // no closing quote
            if (m_p >= limit) continue;
            const auto c = static_cast<unsigned char>(*m_p);
            if (c == '"') {
                ++m_p;
                return true;
            }
            if (c == '\\') {
                ++m_p;
                if (!read_escape(out)) return false;
                continue;
            }
            if (c < 0x20) return false;
            // An ill-formed UTF-8 sequence: one U+FFFD for its maximal subpart.
            std::size_t bad = 0;
            (void)utf8_sequence_at({m_p, static_cast<std::size_t>(m_end - m_p)}, 0, bad);
            out.append(replacement_character);
            m_p += bad;
        }
    }

    bool hex4(unsigned& value) noexcept {
        if (m_end - m_p < 4) return false;
        value = 0;
        for (int i = 0; i < 4; ++i) {
            const char c = *m_p++;
            unsigned digit = 0;
            if (c >= '0' && c <= '9') digit = static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') digit = static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') digit = static_cast<unsigned>(c - 'A' + 10);
            else return false;
            value = value << 4 | digit;
        }
        return true;
    }

    // After a backslash.
    bool read_escape(std::string& out) {
        if (m_p == m_end) return false;
        switch (*m_p++) {
        case '"': out.push_back('"'); return true;
        case '\\': out.push_back('\\'); return true;
        case '/': out.push_back('/'); return true;
        case 'b': out.push_back('\b'); return true;
        case 'f': out.push_back('\f'); return true;
        case 'n': out.push_back('\n'); return true;
        case 'r': out.push_back('\r'); return true;
        case 't': out.push_back('\t'); return true;
        case 'u': break;
        default: return false;
        }
        unsigned cp = 0;
        if (!hex4(cp)) return false;
        if (cp >= 0xdc00 && cp <= 0xdfff) return false;  // a low surrogate alone
        if (cp >= 0xd800 && cp <= 0xdbff) {
            // Must be followed by the escaped low half.
            unsigned low = 0;
            if (m_end - m_p < 2 || m_p[0] != '\\' || m_p[1] != 'u') return false;
            m_p += 2;
            if (!hex4(low) || low < 0xdc00 || low > 0xdfff) return false;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
        }
        char utf8[4];
        std::size_t len = 0;
        if (cp < 0x80) {
            utf8[len++] = static_cast<char>(cp);
        } else if (cp < 0x800) {
            utf8[len++] = static_cast<char>(0xc0 | cp >> 6);
            utf8[len++] = static_cast<char>(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            utf8[len++] = static_cast<char>(0xe0 | cp >> 12);
            utf8[len++] = static_cast<char>(0x80 | (cp >> 6 & 0x3f));
            utf8[len++] = static_cast<char>(0x80 | (cp & 0x3f));
        } else {
            utf8[len++] = static_cast<char>(0xf0 | cp >> 18);
            utf8[len++] = static_cast<char>(0x80 | (cp >> 12 & 0x3f));
            utf8[len++] = static_cast<char>(0x80 | (cp >> 6 & 0x3f));
            utf8[len++] = static_cast<char>(0x80 | (cp & 0x3f));
        }
        out.append(utf8, len);
        return true;
    }

    static bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

    // A number, by RFC 8259's grammar; its value as nlohmann gives it.
    bool read_number(json& out) {
        const char* start = m_p;
        const bool negative = *m_p == '-';
        if (negative) ++m_p;
        if (m_p == m_end) return false;
        if (*m_p == '0') {
            ++m_p;
        } else if (*m_p >= '1' && *m_p <= '9') {
            while (m_p != m_end && is_digit(*m_p)) ++m_p;
        } else {
            return false;
        }
        bool integer = true;
        if (m_p != m_end && *m_p == '.') {
            ++m_p;
            if (m_p == m_end || !is_digit(*m_p)) return false;
            while (m_p != m_end && is_digit(*m_p)) ++m_p;
            integer = false;
        }
        if (m_p != m_end && (*m_p == 'e' || *m_p == 'E')) {
            ++m_p;
            if (m_p != m_end && (*m_p == '+' || *m_p == '-')) ++m_p;
            if (m_p == m_end || !is_digit(*m_p)) return false;
            while (m_p != m_end && is_digit(*m_p)) ++m_p;
            integer = false;
        }
        if (integer) {
            if (negative) {
                std::int64_t v = 0;
                if (auto [end, ec] = std::from_chars(start, m_p, v); ec == std::errc() && end == m_p) {
                    out = static_cast<json::number_integer_t>(v);
                    return true;
                }
            } else {
                std::uint64_t v = 0;
                if (auto [end, ec] = std::from_chars(start, m_p, v); ec == std::errc() && end == m_p) {
                    out = static_cast<json::number_unsigned_t>(v);
                    return true;
                }
            }
            // Too large for either: a double, as nlohmann makes it.
        }
        double d = 0;
        auto [end, ec] = std::from_chars(start, m_p, d);
        if (ec == std::errc::result_out_of_range) {
            // Underflow reads as zero (or the nearest subnormal), overflow
            // as infinity, as strtod reads them; the C locale's, whatever
            // locale the program set.
            static const locale_t c_locale = ::newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(nullptr));
            if (c_locale == static_cast<locale_t>(nullptr)) return false;
            const std::string digits(start, m_p);
            d = ::strtod_l(digits.c_str(), nullptr, c_locale);
        } else if (ec != std::errc() || end != m_p) {
            return false;
        }
        if (!std::isfinite(d)) return false;  // nlohmann: "number overflow"
        out = d;
        return true;
    }

    const char* m_begin;
    const char* m_p;
    const char* m_end;
    json_parse_options m_options;
    std::uintptr_t m_page = 0;
    std::uintptr_t m_released = 0;  // pages before this were handed back
    const char* m_release_at = nullptr;  // when to hand back the pages read
};

}  // namespace

std::size_t utf8_sequence_at(std::string_view text, std::size_t i, std::size_t& bad) noexcept {
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

bool parse_json(std::string_view text, json& out, const json_parse_options& options) noexcept {
    try {
        parser p(text, options);
        if (p.parse(out)) return true;
    } catch (...) {
        // Out of memory, or a container the depth limit allows but the
        // allocator does not: not acceptable JSON either way.
    }
    try {
        out = nullptr;
    } catch (...) {
    }
    return false;
}

header_read read_header(std::string_view text, std::size_t max_depth, message_header& out) noexcept {
    try {
        parser p(text, {.max_depth = max_depth});
        return p.parse_header(out);
    } catch (...) {
        // Out of memory, or a container the depth limit allows but the
        // allocator does not.
        return header_read::bad_json;
    }
}

namespace {

void write_string(std::string_view s, std::string& out) {
    out.reserve(out.size() + s.size() + 2);
    out.push_back('"');
    const char* p = s.data();
    const char* const end = p + s.size();
    for (;;) {
        const char* run = p;
        p = scan_plain(p, end, end);
        out.append(run, static_cast<std::size_t>(p - run));
        if (p == end) break;
        const auto c = static_cast<unsigned char>(*p);
        if (c >= 0x80)
            throw error(errc::invalid_argument, "invalid UTF-8 byte at index " + std::to_string(p - s.data()) +
                                                    " of a string");
        switch (c) {
        case '"': out.append("\\\""); break;
        case '\\': out.append("\\\\"); break;
        case '\b': out.append("\\b"); break;
        case '\f': out.append("\\f"); break;
        case '\n': out.append("\\n"); break;
        case '\r': out.append("\\r"); break;
        case '\t': out.append("\\t"); break;
        default: {
            static constexpr char digits[] = "0123456789abcdef";
            const char escaped[] = {'\\', 'u', '0', '0', digits[c >> 4], digits[c & 0xf]};
            out.append(escaped, sizeof escaped);
        }
        }
        ++p;
    }
    out.push_back('"');
}

template <class Int>
void write_integer(Int v, std::string& out) {
    char buf[24];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, static_cast<std::size_t>(end - buf));
}

}  // namespace

void dump_json(const json& j, std::string& out) {
    switch (j.type()) {
    case json::value_t::null: out.append("null"); return;
    case json::value_t::boolean: out.append(j.get<bool>() ? "true" : "false"); return;
    case json::value_t::number_integer: write_integer(j.get<json::number_integer_t>(), out); return;
    case json::value_t::number_unsigned: write_integer(j.get<json::number_unsigned_t>(), out); return;
    case json::value_t::string: write_string(j.get_ref<const std::string&>(), out); return;
    case json::value_t::array: {
        out.push_back('[');
        bool first = true;
        for (const json& v : j.get_ref<const json::array_t&>()) {
            if (!first) out.push_back(',');
            first = false;
            dump_json(v, out);
        }
        out.push_back(']');
        return;
    }
    case json::value_t::object: {
        out.push_back('{');
        bool first = true;
        for (const auto& [key, v] : j.get_ref<const json::object_t&>()) {
            if (!first) out.push_back(',');
            first = false;
            write_string(key, out);
            out.push_back(':');
            dump_json(v, out);
        }
        out.push_back('}');
        return;
    }
    default:
        // Doubles (nlohmann's shortest round-trip form), binary values.
        out.append(j.dump());
        return;
    }
}

void dump_header(const message_header& h, std::string& out) {
    if (h.empty()) {
        out.append("{}");
        return;
    }
    out.push_back('{');
    bool first = true;
    for (const auto& [name, field] : header_fields) {
        if (!first) out.push_back(',');
        first = false;
        out.push_back('"');
        out.append(name);
        out.append("\":");
        write_string(h.*field, out);
    }
    out.push_back('}');
}

bool parse_object(std::string_view text, std::size_t max_depth, json& out) noexcept {
    return parse_json(text, out, {.max_depth = max_depth}) && out.is_object();
}

}  // namespace kernex::wire
