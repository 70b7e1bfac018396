#include "completion.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <set>

namespace kernex::bash {

namespace {

bool is_separator(char c) {
    return std::string_view(" \t\n;|&()<>`\"'=").find(c) != std::string_view::npos;
}

bool is_name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

// Start of the word that ends at `cursor`; a backslash-escaped separator
// ("my\ file") belongs to the word.
std::size_t word_start(std::string_view code, std::size_t cursor) {
    std::size_t start = cursor;
    while (start > 0) {
        const char c = code[start - 1];
        if (is_separator(c) && !(start >= 2 && code[start - 2] == '\\')) break;
        --start;
    }
    return start;
}

// Whether a word starting at `start` is in command position: first on its
// line or after an operator, or after a word that takes a command.
bool in_command_position(std::string_view code, std::size_t start) {
    std::size_t i = start;
    while (i > 0 && (code[i - 1] == ' ' || code[i - 1] == '\t')) --i;
    if (i == 0) return true;
    if (std::string_view(";|&(\n`{").find(code[i - 1]) != std::string_view::npos) return true;
    std::size_t word_begin = i;
    while (word_begin > 0 && !is_separator(code[word_begin - 1])) --word_begin;
    const std::string_view previous = code.substr(word_begin, i - word_begin);
    static constexpr std::array<std::string_view, 18> takes_command = {
        "then", "do", "else", "elif", "if", "while", "until", "!", "time", "sudo",
        "exec", "command", "builtin", "nohup", "xargs", "type", "which", "env"};
    return std::find(takes_command.begin(), takes_command.end(), previous) != takes_command.end();
}

std::string unescape(std::string_view word) {
    std::string out;
    for (std::size_t i = 0; i < word.size(); ++i) {
        if (word[i] == '\\' && i + 1 < word.size()) ++i;
        out += word[i];
    }
    return out;
}

std::string escape(std::string_view word) {
    std::string out;
    for (char c : word) {
        if (std::string_view(" \t\n\\'\"()<>&;|*?[]$`!{}#").find(c) != std::string_view::npos)
            out += '\\';
        out += c;
    }
    return out;
}

}  // namespace

std::string single_quote(std::string_view text) {
    std::string out = "'";
    for (char c : text) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

completion_plan plan_completion(std::string_view code, std::size_t cursor) {
    completion_plan plan;
    cursor = std::min(cursor, code.size());
    const std::size_t start = word_start(code, cursor);
    const std::string_view word = code.substr(start, cursor - start);
    plan.end = cursor;

    const auto dollar = word.rfind('$');
    if (dollar != std::string_view::npos) {
        std::string_view rest = word.substr(dollar + 1);
        plan.lead = "$";
        if (!rest.empty() && rest.front() == '{') {
            plan.lead = "${";
            rest.remove_prefix(1);
        }
        if (!std::all_of(rest.begin(), rest.end(), is_name_char)) return plan;
        plan.kind = completion_kind::variables;
        plan.prefix = std::string(rest);
        plan.start = start + dollar;
        return plan;
    }
    plan.start = start;
    plan.prefix = unescape(word);
    const bool has_slash = word.find('/') != std::string_view::npos;
    if (!has_slash && !word.empty() && in_command_position(code, start))
        plan.kind = completion_kind::commands;
    else if (word.empty() && in_command_position(code, start))
        plan.kind = completion_kind::none;  // every command there is: not a useful list
    else
        plan.kind = completion_kind::paths;
    return plan;
}

std::string completion_query(const completion_plan& plan) {
    const std::string word = single_quote(plan.prefix);
    switch (plan.kind) {
    case completion_kind::commands:
        return "builtin compgen -c -- " + word;
    case completion_kind::variables:
        return "builtin compgen -v -- " + word;
    case completion_kind::paths:
        // Directories get a slash, as readline shows them.
        return "builtin compgen -f -- " + word +
               " | while IFS= builtin read -r __kx_f; do if [[ -d $__kx_f ]]; then"
               " builtin printf '%s/\\n' \"$__kx_f\"; else builtin printf '%s\\n' \"$__kx_f\"; fi; done";
    case completion_kind::none:
        break;
    }
    return "";
}

std::vector<std::string> completion_matches(const completion_plan& plan, std::string_view reply) {
    std::set<std::string> unique;
    std::size_t begin = 0;
    while (begin < reply.size()) {
        auto end = reply.find('\n', begin);
        if (end == std::string_view::npos) end = reply.size();
        const std::string_view line = reply.substr(begin, end - begin);
        begin = end + 1;
        if (line.empty() || line.substr(0, 5) == "__kx_") continue;
        switch (plan.kind) {
        case completion_kind::variables:
            unique.insert(plan.lead + std::string(line) + (plan.lead == "${" ? "}" : ""));
            break;
        case completion_kind::paths:
            unique.insert(escape(line));
            break;
        default:
            unique.insert(std::string(line));
        }
    }
    return {unique.begin(), unique.end()};
}

std::string word_at(std::string_view code, std::size_t cursor) {
    cursor = std::min(cursor, code.size());
    std::size_t end = cursor;
    while (end < code.size() && !is_separator(code[end])) ++end;
    std::size_t start = cursor;
    while (start > 0 && !is_separator(code[start - 1])) --start;
    return std::string(code.substr(start, end - start));
}

std::string inspect_query(const std::string& word) {
    const std::string w = single_quote(word);
    return "builtin type -a -- " + w + "; case $(builtin type -t -- " + w +
           ") in builtin|keyword) builtin echo; builtin help -- " + w + ";; esac";
}

}  // namespace kernex::bash
