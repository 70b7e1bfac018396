// Completion and inspection for bash: which word the cursor is on, what kind
// of thing it names (a command, a $variable, a path), and the compgen/type
// query that asks the live shell, so its own functions, aliases, variables
// and working directory are part of the answer.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace kernex::bash {

enum class completion_kind { none, commands, variables, paths };

struct completion_plan {
    completion_kind kind = completion_kind::none;
    std::string prefix;      // what was typed, unescaped, without a leading $ or ${
    std::string lead;        // "$" or "${", put back in front of variable names
    std::size_t start = 0;   // byte range of `code` that a match replaces
    std::size_t end = 0;
};

// Looks at the word ending at byte `cursor` of `code`.
completion_plan plan_completion(std::string_view code, std::size_t cursor);

// The shell code that lists candidates (one a line) for `plan`.
std::string completion_query(const completion_plan& plan);

// The matches for `plan` from the query's output: sorted, unique, escaped
// for the shell, the driver's own names left out.
std::vector<std::string> completion_matches(const completion_plan& plan, std::string_view reply);

// The word around byte `cursor`, for inspect; "" when there is none.
std::string word_at(std::string_view code, std::size_t cursor);

// The shell code that describes `word`: `type -a`, and `help` for builtins and keywords.
std::string inspect_query(const std::string& word);

// `text` as one single-quoted shell word.
std::string single_quote(std::string_view text);

}  // namespace kernex::bash
