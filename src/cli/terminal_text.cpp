#include "cli/terminal_text.hpp"

#include <unistd.h>

#include <cstdlib>
#include <map>

#include "kernex/output_files.hpp"

namespace kernex::cli {

namespace {

constexpr char esc = '\x1b';

// Skips a string sequence (OSC, DCS, SOS, PM, APC) whose body starts at i:
// it ends at BEL (OSC) or ST (ESC \); an unterminated one runs to the end.
std::size_t skip_string(std::string_view t, std::size_t i) {
    for (; i < t.size(); ++i) {
        if (t[i] == '\a') return i + 1;
        if (t[i] == esc) return i + 1 < t.size() && t[i + 1] == '\\' ? i + 2 : i + 1;
    }
    return i;
}

}  // namespace

std::string terminal_safe(std::string_view t) {
    std::string out;
    out.reserve(t.size());
    for (std::size_t i = 0; i < t.size();) {
        const auto c = static_cast<unsigned char>(t[i]);
        if (c == 0xC2 && i + 1 < t.size() && static_cast<unsigned char>(t[i + 1]) >= 0x80 &&
            static_cast<unsigned char>(t[i + 1]) <= 0x9F) {
            i += 2;  // a C1 control (U+009B is CSI to some terminals)
            continue;
        }
        if (c != static_cast<unsigned char>(esc)) {
            out.push_back(t[i++]);
            continue;
        }
        if (i + 1 >= t.size()) break;
        const char kind = t[i + 1];
        if (kind == '[') {
            // CSI: parameter and intermediate bytes, then a final byte 0x40..0x7E.
            std::size_t j = i + 2;
            bool sgr_params = true;
            while (j < t.size() && (static_cast<unsigned char>(t[j]) < 0x40 || static_cast<unsigned char>(t[j]) > 0x7E)) {
                if (!((t[j] >= '0' && t[j] <= '9') || t[j] == ';' || t[j] == ':')) sgr_params = false;
                if (static_cast<unsigned char>(t[j]) < 0x20) break;  // not a CSI any more: drop what we have
                ++j;
            }
            if (j < t.size() && t[j] == 'm' && sgr_params) out.append(t.substr(i, j + 1 - i));
            i = j < t.size() && static_cast<unsigned char>(t[j]) >= 0x40 ? j + 1 : j;
        } else if (kind == ']' || kind == 'P' || kind == 'X' || kind == '^' || kind == '_') {
            i = skip_string(t, i + 2);
        } else {
            i += 2;  // ESC c (reset), ESC 7/8, ESC ( B, ...: the ESC and one byte
        }
    }
    return out;
}

bool is_terminal(int fd) noexcept { return ::isatty(fd) == 1; }

stream_style::stream_style(colour_mode mode, int fd) : terminal(is_terminal(fd)) {
    const char* no_color = std::getenv("NO_COLOR");
    colours = mode == colour_mode::always ||
              (mode == colour_mode::automatic && terminal && !(no_color && *no_color));
    strip = mode == colour_mode::never || (terminal && !colours);
}

std::string stream_style::text(std::string_view t) const {
    std::string out = terminal ? terminal_safe(t) : std::string(t);
    return strip ? strip_ansi(out) : out;
}

void add_colour_option(CLI::App* cmd, colour_mode& mode) {
    cmd->add_option("--color", mode,
                    "Colours: auto (on a terminal, unless $NO_COLOR is set), always, never")
        ->transform(CLI::CheckedTransformer(
            std::map<std::string, colour_mode>{
                {"auto", colour_mode::automatic}, {"always", colour_mode::always}, {"never", colour_mode::never}},
            CLI::ignore_case))
        ->option_text("auto|always|never");
}

}  // namespace kernex::cli
