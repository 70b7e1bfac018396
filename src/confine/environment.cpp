#include "confine/environment.hpp"

#include <array>
#include <cstdlib>

#include "kernex/error.hpp"

extern char** environ;

namespace kernex::detail {

bool allowed_by_default(std::string_view name) noexcept {
    static constexpr std::array<std::string_view, 6> names = {"PATH", "HOME", "LANG", "TERM", "TZ", "USER"};
    for (auto n : names)
        if (name == n) return true;
    // Sanitizer settings (ASAN_OPTIONS, ...): no secret, and an instrumented
    // kernel must keep reporting where the test run collects reports.
    return name.starts_with("LC_") || (name.size() > 10 && name.ends_with("SAN_OPTIONS"));
}

std::map<std::string, std::string> code_environment(const std::map<std::string, std::string>& added, bool inherit) {
    std::map<std::string, std::string> env;
    for (char** e = environ; e && *e; ++e) {
        std::string_view entry(*e);
        const auto eq = entry.find('=');
        if (eq == std::string_view::npos || eq == 0) continue;
        const auto name = entry.substr(0, eq);
        if (inherit || allowed_by_default(name)) env.insert_or_assign(std::string(name), std::string(entry.substr(eq + 1)));
    }
    for (const auto& [name, value] : added) env.insert_or_assign(name, value);
    return env;
}

std::vector<std::pair<std::string, std::string>> parse_env_assignment(std::string_view text) {
    const auto eq = text.find('=');
    const std::string name(text.substr(0, eq));
    const bool valid = !name.empty() && name.find('\0') == std::string::npos;
    if (!valid)
        throw error(errc::invalid_argument,
                    "environment variable '" + std::string(text) + "' has no name; give NAME=VALUE, or NAME to pass "
                    "the host's value");
    if (eq != std::string_view::npos) return {{name, std::string(text.substr(eq + 1))}};
    const char* host = std::getenv(name.c_str());
    if (!host) return {};
    return {{name, host}};
}

}  // namespace kernex::detail
