// Fenced code blocks as CommonMark defines them, for the one use kernex has:
// running what a model wrote. Fences inside list items and block quotes
// deeper than three spaces are not recognised (CommonMark would make them
// indented code or container content).
#include <optional>

#include "kernex/executor.hpp"

namespace kernex {

namespace {

struct fence {
    char marker;          // '`' or '~'
    std::size_t length;   // three or more
    std::size_t indent;   // zero to three spaces, removed from the content lines
    std::string_view info;
};

constexpr std::size_t max_fence_indent = 3;

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
    return s;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::size_t leading_spaces(std::string_view line) {
    std::size_t n = 0;
    while (n < line.size() && line[n] == ' ') ++n;
    return n;
}

// The marker run that starts line after at most three spaces: its indent and
// length, or nullopt.
std::optional<fence> fence_run(std::string_view line) {
    const std::size_t indent = leading_spaces(line);
    if (indent > max_fence_indent || indent >= line.size()) return std::nullopt;
    const char marker = line[indent];
    if (marker != '`' && marker != '~') return std::nullopt;
    std::size_t end = indent;
    while (end < line.size() && line[end] == marker) ++end;
    if (end - indent < 3) return std::nullopt;
    return fence{marker, end - indent, indent, trim(line.substr(end))};
}

std::optional<fence> opening_fence(std::string_view line) {
    auto f = fence_run(line);
    // A backtick in a backtick fence's info string makes the line inline
    // code (```x```), not a fence.
    if (f && f->marker == '`' && f->info.find('`') != std::string_view::npos) return std::nullopt;
    return f;
}

bool closes(const fence& open, std::string_view line) {
    auto f = fence_run(line);
    return f && f->marker == open.marker && f->length >= open.length && f->info.empty();
}

std::string_view first_word(std::string_view s) {
    s = trim(s);
    std::size_t end = 0;
    while (end < s.size() && !is_blank(s[end])) ++end;
    return s.substr(0, end);
}

// The language a shebang line names: the interpreter's name (after env and
// its options), with python3.11 -> python, node -> javascript, dash -> sh.
std::string language_from_shebang(std::string_view code) {
    if (code.substr(0, 2) != "#!") return {};
    std::string_view rest = code.substr(2, code.find('\n') - 2);
    auto next_word = [&rest] {
        std::string_view w = first_word(rest);
        rest = trim(rest);
        rest.remove_prefix(w.size());
        return w;
    };
    auto base_name = [](std::string_view path) { return path.substr(path.rfind('/') + 1); };
    std::string_view program = base_name(next_word());
    if (program == "env") {
        do program = next_word();
        while (!program.empty() && (program.front() == '-' || program.find('=') != std::string_view::npos));
        program = base_name(program);
    }
    if (program.substr(0, 6) == "python") return "python";
    if (program == "node" || program == "nodejs") return "javascript";
    if (program == "dash") return "sh";
    return lower(program);
}

// The lines of text without their line ends (LF or CRLF).
std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    while (!text.empty()) {
        const std::size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        lines.push_back(line);
        if (nl == std::string_view::npos) break;
        text.remove_prefix(nl + 1);
    }
    return lines;
}

}  // namespace

std::vector<code_block> extract_code_blocks(std::string_view markdown, std::string_view default_language) {
    const std::vector<std::string_view> lines = split_lines(markdown);
    std::vector<code_block> blocks;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const auto open = opening_fence(lines[i]);
        if (!open) continue;
        std::size_t close = i + 1;
        while (close < lines.size() && !closes(*open, lines[close])) ++close;
        // Never closed: everything after the fence would be its content, and
        // a message cut off there is not code we should run.
        if (close == lines.size()) break;

        code_block block;
        block.line = static_cast<int>(i) + 2;  // the line after the fence, counted from 1
        for (std::size_t k = i + 1; k < close; ++k) {
            std::string_view line = lines[k];
            line.remove_prefix(std::min(open->indent, leading_spaces(line)));
            block.code.append(line).append("\n");
        }
        block.language = lower(first_word(open->info));
        if (block.language.empty()) block.language = language_from_shebang(block.code);
        if (block.language.empty()) block.language = lower(default_language);
        blocks.push_back(std::move(block));
        i = close;
    }
    return blocks;
}

}  // namespace kernex
