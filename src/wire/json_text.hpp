// JSON text for the wire: reading a peer's into nlohmann::json fast and
// without extra copies, and writing ours fast (internal to the wire module).
//
// nlohmann's own parser reads a character at a time through an input adapter
// and builds every string in a token buffer that is then copied into the
// value: about 100 MB/s, and a string held three times at the peak. Output
// streams are most of what a kernel sends, so this parser scans strings 16
// bytes at a time for the few bytes that need attention (quote, backslash,
// control characters, non-ASCII), appends plain runs whole, and moves each
// finished string into its value. It accepts exactly what nlohmann's strict
// parser accepts and builds the same values (tests/unit/test_wire.cpp compares
// the two on corner cases and random documents), except that ill-formed
// UTF-8 in a string reads as U+FFFD, as jupyter_client reads it, and that a
// NUL byte after the value is not taken for the end of the text (nlohmann
// ignores what follows one; Python's json refuses it, as this parser does).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kernex/message.hpp"

namespace kernex::wire {

struct json_parse_options {
    // Deepest nesting of arrays and objects; opening one more fails.
    std::size_t max_depth = 1000;
    // The caller gives text up: it is in memory of its own allocation that
    // it frees after the parse and never reads again (a received ZeroMQ
    // frame of its own). While a long string is copied out, the whole pages
    // of text already read are handed back to the operating system
    // (madvise MADV_DONTNEED: they read as zeros afterwards), so that a
    // 100 MB output is not held twice. Only pages entirely inside text are
    // touched, never the first or the last (allocator bookkeeping may share
    // them).
    bool release_read_pages = false;
};

// Parses text, one JSON value (RFC 8259) with optional surrounding
// whitespace and an optional leading UTF-8 byte order mark, into out.
// Returns false, never throws, when text is not JSON, nests deeper than
// max_depth, holds a number outside a double's range or an escaped lone
// surrogate, or memory runs out. Integers become number_unsigned (when not
// negative) or number_integer when they fit, doubles otherwise; a repeated
// key keeps its last value (as Python's json and nlohmann do).
bool parse_json(std::string_view text, nlohmann::json& out, const json_parse_options& options = {}) noexcept;

// Appends j's compact JSON text to out, exactly as j.dump() writes it (the
// same escapes, keys in order, numbers alike), with strings escaped a run at
// a time rather than a byte at a time. Throws kernex::error(invalid_argument)
// for a string (or key) that is not valid UTF-8.
void dump_json(const nlohmann::json& j, std::string& out);

enum class header_read { ok, bad_json, bad_field };

// Reads a message header without building a JSON value for it: text must be
// a JSON object, read exactly as parse_json reads it (max_depth counts the
// object itself); the members named like message_header's fields go
// straight into them when they are strings, other members are read and
// dropped. Every field is cleared first; a repeated key counts last, as in
// parse_json. Returns bad_json when text is not JSON or not an object, and
// then bad_field when one of the fields is there with a value that is not a
// string (from_json's protocol_error); never throws.
header_read read_header(std::string_view text, std::size_t max_depth, message_header& out) noexcept;

// Appends the JSON text of h, exactly what dump_json(h.to_json()) appends,
// without building the JSON value. Throws kernex::error(invalid_argument)
// for a field that is not valid UTF-8.
void dump_header(const message_header& h, std::string& out);

// parse_json with max_depth, into out, which must then be an object: false
// otherwise (a part of a message, a JSON body of a server).
bool parse_object(std::string_view text, std::size_t max_depth, nlohmann::json& out) noexcept;

// The length of the well-formed UTF-8 sequence at text[i], or 0 with bad set
// to the length of the maximal ill-formed subpart there (Unicode 15, table
// 3-7), which is what one U+FFFD replaces.
std::size_t utf8_sequence_at(std::string_view text, std::size_t i, std::size_t& bad) noexcept;

}  // namespace kernex::wire
