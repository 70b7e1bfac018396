// A percent-format script ("# %%" / "#%%" cell markers, as Jupytext, VS Code and
// Spyder write them) as a notebook.
#include <sstream>

#include "kernex/kernelspec.hpp"
#include "kernex/notebook.hpp"

namespace kernex {

namespace {

// Markdown lines are comments in the script: "# text" -> "text".
std::string uncomment(const std::string& line) {
    if (line.rfind("# ", 0) == 0) return line.substr(2);
    if (line.rfind("#", 0) == 0) return line.substr(1);
    return line;
}

// A cell's source as Jupytext keeps it: no trailing newline, no blank
// lines at either end.
std::string trimmed(const std::string& s) {
    auto first = s.find_first_not_of('\n');
    if (first == std::string::npos) return {};
    auto last = s.find_last_not_of(" \t\r\n");
    auto begin = s.rfind('\n', first);
    begin = begin == std::string::npos ? 0 : begin + 1;
    return s.substr(begin, last + 1 - begin);
}

}  // namespace

std::optional<std::string_view> percent_cell_marker(std::string_view line) {
    if (line.empty() || line[0] != '#') return std::nullopt;
    auto at = line.find_first_not_of(' ', 1);
    if (at == std::string_view::npos || line.substr(at, 2) != "%%") return std::nullopt;
    auto rest = line.substr(at + 2);
    if (!rest.empty() && rest[0] != ' ' && rest[0] != '\t' && rest[0] != '\r') return std::nullopt;
    auto open = rest.find('[');
    auto close = open == std::string_view::npos ? open : rest.find(']', open);
    if (close != std::string_view::npos) {
        auto kind = rest.substr(open + 1, close - open - 1);
        if (kind == "markdown" || kind == "md") return "markdown";
    }
    return "code";
}

notebook notebook_from_percent_script(std::string_view text, const kernelspec& spec) {
    notebook nb;
    nb.doc()["metadata"]["kernelspec"] = {
        {"name", spec.name}, {"display_name", spec.display_name}, {"language", spec.language}};
    std::string kind = "code", current;
    bool started = false;
    auto flush = [&] {
        auto source = trimmed(current);
        if (started || !source.empty()) nb.cells().push_back(nb.new_cell(kind, source));
        current.clear();
    };
    std::istringstream in{std::string(text)};
    std::string line;
    while (std::getline(in, line)) {
        if (auto marker = percent_cell_marker(line)) {
            flush();
            started = true;
            kind = *marker;
            continue;
        }
        current += (kind == "markdown" ? uncomment(line) : line) + "\n";
    }
    flush();
    return nb;
}

}  // namespace kernex
