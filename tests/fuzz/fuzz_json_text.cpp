// libFuzzer target for wire::parse_json and wire::dump_json, the hand-made
// JSON reader and writer every message a kernel (or a peer posing as one)
// sends goes through. Differential: nlohmann's strict parser is the
// reference. Beyond "no crash", it traps when:
//  - nlohmann accepts a text (no NUL byte, nesting within max_depth) and parse_json
//    refuses it or builds another value;
//  - parse_json accepts a text that is valid UTF-8 without a NUL byte and
//    nlohmann refuses it or builds another value;
//  - dump_json of what parse_json built differs from nlohmann's dump().
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "wire/json_text.hpp"

namespace {

void require(bool condition) {
    if (!condition) __builtin_trap();
}

bool valid_utf8(std::string_view text) {
    for (std::size_t i = 0; i < text.size();) {
        std::size_t bad = 0;
        const std::size_t n = kernex::wire::utf8_sequence_at(text, i, bad);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

// The deepest nesting the text could have (brackets inside strings counted too).
std::size_t bracket_bound(std::string_view text) {
    std::size_t n = 0;
    for (char c : text) n += (c == '[' || c == '{');
    return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    kernex::wire::json_parse_options options;
    options.max_depth = 64;
    nlohmann::json ours;
    const bool ours_ok = kernex::wire::parse_json(text, ours, options);
    const nlohmann::json theirs = nlohmann::json::parse(text, nullptr, false);
    const bool theirs_ok = !theirs.is_discarded();
    // nlohmann takes a NUL byte for the end of the text; parse_json does not (documented).
    const bool has_nul = text.find('\0') != std::string_view::npos;
    if (theirs_ok && !has_nul && bracket_bound(text) <= options.max_depth) {
        require(ours_ok);
        require(ours == theirs);
    }
    if (ours_ok) {
        if (valid_utf8(text) && !has_nul) {
            require(theirs_ok);
            require(ours == theirs);
        }
        std::string written;
        kernex::wire::dump_json(ours, written);
        require(written == ours.dump());
    }
    return 0;
}
