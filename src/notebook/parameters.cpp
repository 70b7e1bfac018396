// Papermill's parameters: an injected-parameters cell, written in the
// kernel's language (python, R, julia, bash), after the cell tagged
// "parameters". Values are JSON; each language gets literals it parses back
// to the same value (strings escaped so no value can become code).
#include <algorithm>
#include <cctype>
#include <cmath>

#include "kernex/error.hpp"
#include "kernex/notebook.hpp"

namespace kernex {

namespace {

enum class language { python, r, julia, bash };

language language_of(std::string_view name) {
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower == "python" || lower == "python3") return language::python;
    if (lower == "r") return language::r;
    if (lower == "julia") return language::julia;
    if (lower == "bash" || lower == "sh") return language::bash;
    throw error(errc::unsupported, "cannot write parameters in the kernel's language '" + std::string(name) +
                                       "': kernex writes them in python, R, julia and bash");
}

bool identifier(const std::string& name) {
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
    return std::all_of(name.begin(), name.end(),
                       [](unsigned char c) { return std::isalnum(c) || c == '_'; });
}

// A JSON string literal: valid in Python, R and Julia (with \u escapes for
// control characters), once Julia's interpolation character is escaped.
std::string quoted(const std::string& s, language lang) {
    std::string q = json(s).dump(-1, ' ', false, json::error_handler_t::replace);
    if (lang != language::julia) return q;
    std::string out;
    for (char c : q) {
        if (c == '$') out += '\\';
        out += c;
    }
    return out;
}

std::string number(const json& v) {
    if (v.is_number_float()) {
        double d = v.get<double>();
        if (!std::isfinite(d)) throw error(errc::invalid_argument, "a parameter is not a finite number");
    }
    return v.dump();
}

// How a language spells JSON's values (all but bash).
struct syntax {
    const char *null, *yes, *no, *list_open, *list_close, *dict_open, *dict_kv, *dict_close;
};
const syntax& syntax_of(language lang) {
    static const syntax python{"None", "True", "False", "[", "]", "{", ": ", "}"};
    static const syntax r{"NULL", "TRUE", "FALSE", "list(", ")", "list(", " = ", ")"};
    static const syntax julia{"nothing", "true", "false", "[", "]", "Dict(", " => ", ")"};
    return lang == language::python ? python : lang == language::r ? r : julia;
}

std::string bash_literal(const json& v, bool nested) {
    if (v.is_null()) return "''";
    if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
    if (v.is_number()) return number(v);
    if (v.is_string()) {
        // Single quotes take everything literally; a quote closes, is
        // escaped, and reopens.
        std::string s = "'";
        for (char c : v.get<std::string>()) s += c == '\'' ? std::string("'\\''") : std::string(1, c);
        return s + "'";
    }
    if (v.is_array() && !nested) {
        std::string s = "(";
        for (std::size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + bash_literal(v[i], true);
        return s + ")";
    }
    throw error(errc::unsupported, "bash parameters cannot hold objects or nested lists: " + v.dump());
}

std::string literal(const json& v, language lang) {
    if (lang == language::bash) return bash_literal(v, false);
    const auto& s = syntax_of(lang);
    if (v.is_null()) return s.null;
    if (v.is_boolean()) return v.get<bool>() ? s.yes : s.no;
    if (v.is_number()) return number(v);
    if (v.is_string()) return quoted(v.get<std::string>(), lang);
    std::string out = v.is_array() ? s.list_open : s.dict_open;
    bool first = true;
    for (const auto& [k, x] : v.items()) {
        out += first ? "" : ", ";
        if (v.is_object()) out += quoted(k, lang) + s.dict_kv;
        out += literal(x, lang);
        first = false;
    }
    return out + (v.is_array() ? s.list_close : s.dict_close);
}

}  // namespace

std::string parameters_source(const json& parameters, std::string_view language_name) {
    if (!parameters.is_object()) throw error(errc::invalid_argument, "parameters must be a JSON object");
    const auto lang = language_of(language_name);
    std::string src = "# Parameters\n";
    for (const auto& [name, value] : parameters.items()) {
        if (!identifier(name))
            throw error(errc::invalid_argument,
                        "parameter name '" + name + "' is not an identifier (letters, digits, _; not starting with a digit)");
        src += name + (lang == language::bash ? "=" : " = ") + literal(value, lang) + "\n";
    }
    return src;
}

void inject_parameters(notebook& nb, const json& parameters, std::string_view language_name) {
    auto cell = nb.new_cell("code", parameters_source(parameters, language_name));
    cell["metadata"]["tags"] = json::array({"injected-parameters"});
    json& cells = nb.cells();
    auto tagged = [](const json& c, const char* tag) {
        const auto& md = c["metadata"];
        return md.contains("tags") && md["tags"].is_array() &&
               std::find(md["tags"].begin(), md["tags"].end(), json(tag)) != md["tags"].end();
    };
    // As papermill: an earlier injected cell is replaced, in its place.
    for (std::size_t i = 0; i < cells.size(); ++i)
        if (tagged(cells[i], "injected-parameters")) {
            cells.erase(cells.begin() + static_cast<std::ptrdiff_t>(i));
            cells.insert(cells.begin() + static_cast<std::ptrdiff_t>(i), std::move(cell));
            return;
        }
    std::size_t at = 0;
    for (std::size_t i = 0; i < cells.size(); ++i)
        if (tagged(cells[i], "parameters")) {
            at = i + 1;
            break;
        }
    cells.insert(cells.begin() + static_cast<std::ptrdiff_t>(at), std::move(cell));
}

}  // namespace kernex
