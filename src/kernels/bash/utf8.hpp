// UTF-8 helpers for the bash kernel: Jupyter messages must carry valid UTF-8
// and count cursor positions in code points, while the shell deals in bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kernex::bash {

// Length of the longest prefix of `bytes` that does not end inside a
// multi-byte sequence. Output read from a pipe can stop mid-character; the
// tail is kept for the next read instead of being mangled.
std::size_t complete_prefix_length(std::string_view bytes) noexcept;

// `bytes` with every invalid sequence replaced by U+FFFD.
std::string sanitize(std::string_view bytes);

// Byte offset of the code point at index `code_points` (clamped to the end).
std::size_t byte_offset(std::string_view text, std::size_t code_points) noexcept;

// Number of code points in the first `bytes` bytes of `text`.
std::size_t code_point_count(std::string_view text, std::size_t bytes) noexcept;

}  // namespace kernex::bash
