#include "shell_syntax.hpp"

#include "child.hpp"

#include <sys/wait.h>

#include <array>
#include <cctype>
#include <string_view>

namespace kernex::bash {

namespace {

bool ends_with_line_continuation(std::string_view code) {
    // An odd run of backslashes before the end escapes the newline to come.
    std::size_t n = 0;
    for (auto it = code.rbegin(); it != code.rend() && *it == '\\'; ++it) ++n;
    return n % 2 == 1;
}

std::string_view trim_right(std::string_view s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
    return s;
}

}  // namespace

std::string next_line_indent(const std::string& code) {
    std::string_view text = trim_right(code);
    const auto start = text.rfind('\n');
    std::string_view last = start == std::string_view::npos ? text : text.substr(start + 1);
    std::string indent;
    for (char c : last) {
        if (c != ' ' && c != '\t') break;
        indent += c;
    }
    static constexpr std::array<std::string_view, 8> openers = {"do", "then", "else", "{", "(",
                                                                "in", "|", "&&"};
    for (std::string_view opener : openers) {
        if (last.size() >= opener.size() && last.substr(last.size() - opener.size()) == opener) {
            const bool word = opener.size() == last.size() ||
                              !std::isalnum(static_cast<unsigned char>(last[last.size() - opener.size() - 1]));
            if (word) return indent + "    ";
        }
    }
    return indent;
}

completeness check_completeness(const std::string& bash_path, const std::string& code) {
    if (trim_right(code).empty()) return {"complete", ""};
    if (ends_with_line_continuation(code)) return {"incomplete", next_line_indent(code)};
    child_spec spec;
    spec.argv = {bash_path, "--noprofile", "--norc", "-n"};
    // Messages in English: they are matched below.
    spec.env = environment_with({"LC_ALL=C", "LANG=C"});
    capture_result result;
    try {
        result = run_capture(spec, code, std::chrono::seconds(5));
    } catch (...) {
        return {"unknown", ""};
    }
    if (result.timed_out) return {"unknown", ""};
    const std::string& err = result.err;
    // A here-document cut short is only a warning, with status 0.
    const bool unterminated =
        err.find("unexpected end of file") != std::string::npos ||
        err.find("unexpected EOF while looking for matching") != std::string::npos ||
        err.find("delimited by end-of-file") != std::string::npos;
    if (unterminated) return {"incomplete", next_line_indent(code)};
    if (WIFEXITED(result.wait_status) && WEXITSTATUS(result.wait_status) == 0)
        return {"complete", ""};
    if (err.find("syntax error") != std::string::npos) return {"invalid", ""};
    return {"unknown", ""};
}

}  // namespace kernex::bash
