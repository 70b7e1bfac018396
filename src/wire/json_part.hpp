// Parsing one signed part of a received message (internal to the wire module).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kernex::wire {

// Parses text as a JSON object into out. Returns false (never throws) when
// text is not JSON, not an object, or nests deeper than max_depth. Bytes that
// are not UTF-8 are replaced by U+FFFD, as jupyter_client's unpacker does
// (it decodes with errors="replace"); Python kernels emit such bytes when a
// string holds surrogate escapes.
bool parse_object(std::string_view text, std::size_t max_depth, nlohmann::json& out) noexcept;

// Returns text with each ill-formed UTF-8 subsequence replaced by U+FFFD,
// one replacement per maximal ill-formed subpart (as Python decodes).
std::string replace_invalid_utf8(std::string_view text);

}  // namespace kernex::wire
