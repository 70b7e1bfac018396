// is_complete for bash: the shell's own parser decides (`bash -n` in a
// separate process, so that checking never touches the user's shell).
#pragma once

#include <string>

namespace kernex::bash {

struct completeness {
    std::string status;  // "complete", "incomplete", "invalid" or "unknown"
    std::string indent;  // with "incomplete": what to put before the next line
};

// Asks `bash_path -n` about `code`. "unknown" when bash could not answer.
completeness check_completeness(const std::string& bash_path, const std::string& code);

// The indent for the line after `code`: the last line's, one level deeper
// when that line opens a block.
std::string next_line_indent(const std::string& code);

}  // namespace kernex::bash
