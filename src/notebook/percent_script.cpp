// A percent-format script ("# %%" cell markers, as Jupytext, VS Code and
// Spyder write them) as a notebook.
#include <sstream>

#include "kernex/kernelspec.hpp"
#include "kernex/notebook.hpp"

namespace kernex {

namespace {

bool markdown_marker(const std::string& line) {
    auto open = line.find('[', 4);
    if (open == std::string::npos) return false;
    auto close = line.find(']', open);
    if (close == std::string::npos) return false;
    auto kind = line.substr(open + 1, close - open - 1);
    return kind == "markdown" || kind == "md";
}

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
        if (line.rfind("# %%", 0) == 0) {
            flush();
            started = true;
            kind = markdown_marker(line) ? "markdown" : "code";
            continue;
        }
        current += (kind == "markdown" ? uncomment(line) : line) + "\n";
    }
    flush();
    return nb;
}

}  // namespace kernex
