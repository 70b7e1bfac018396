// What kernex prints to a terminal on behalf of code: the code controls
// every byte, and a terminal obeys escape sequences (set the title, move the
// cursor, rewrite the screen, answer queries into the input, define
// hyperlinks). Text for a terminal keeps SGR colours and drops the rest.
#pragma once

#include <string>
#include <string_view>

namespace kernex::cli {

// text with every escape sequence removed except SGR (ESC [ digits ; : m):
// CSI, OSC, DCS, SOS, PM, APC and two-byte ESC sequences, and the 8-bit C1
// controls as UTF-8 (U+0080..U+009F). Other bytes are kept.
std::string terminal_safe(std::string_view text);

// True when fd is a terminal.
bool is_terminal(int fd) noexcept;

}  // namespace kernex::cli
