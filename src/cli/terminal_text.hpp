// What kernex prints to a terminal on behalf of code: the code controls
// every byte, and a terminal obeys escape sequences (set the title, move the
// cursor, rewrite the screen, answer queries into the input, define
// hyperlinks). Text for a terminal keeps SGR colours and drops the rest.
#pragma once

#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

namespace kernex::cli {

// text with every escape sequence removed except SGR (ESC [ digits ; : m):
// CSI, OSC, DCS, SOS, PM, APC and two-byte ESC sequences, and the 8-bit C1
// controls as UTF-8 (U+0080..U+009F). Other bytes are kept.
std::string terminal_safe(std::string_view text);

// True when fd is a terminal.
bool is_terminal(int fd) noexcept;

// --color: the convention of git, ls and no-color.org.
enum class colour_mode { automatic, always, never };

// How kernex writes text to one of its streams (stdout, stderr). colours:
// whether kernex keeps colours (the kernel's traceback colours, the code's
// SGR): always; never; automatic: when the stream is a terminal and NO_COLOR
// is unset or empty. Into a pipe the code's own bytes go as they are unless
// --color never; a traceback keeps its colours only with colours.
struct stream_style {
    stream_style(colour_mode mode, int fd);
    bool terminal = false;
    bool colours = false;
    bool strip = false;  // every escape sequence removed (never, or a terminal without colours)
    // text as kernex writes it to the stream: terminal_safe on a terminal,
    // then without escape sequences when strip.
    std::string text(std::string_view text) const;
};

// Adds --color auto|always|never (default auto) to cmd.
void add_colour_option(CLI::App* cmd, colour_mode& mode);

}  // namespace kernex::cli
