#include "executors/executor_config.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "confine/environment.hpp"
#include "kernex/error.hpp"

namespace kernex::detail {

const nlohmann::json* executor_config::find(std::string_view key) const {
    const auto it = m_config.find(key);
    return it == m_config.end() ? nullptr : &*it;
}

void executor_config::wrong(std::string_view key, std::string_view expected) const {
    throw error(errc::invalid_argument, "option '" + std::string(key) + "' of executor " + m_executor +
                                            " must be " + std::string(expected) + ", not " + find(key)->dump());
}

std::optional<std::string> executor_config::string(std::string_view key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) wrong(key, "a string");
    return v->get<std::string>();
}

std::optional<std::chrono::milliseconds> executor_config::seconds(std::string_view key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    // Up to a year: anything longer is a mistake, and it keeps the
    // conversion to milliseconds far from overflow.
    constexpr double max_seconds = 365.0 * 24 * 3600;
    if (!v->is_number() || !(v->get<double>() > 0) || v->get<double>() > max_seconds)
        wrong(key, "a positive number of seconds (at most a year)");
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(v->get<double>() * 1000)));
}

std::optional<std::uint64_t> executor_config::count(std::string_view key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number_unsigned() && !(v->is_number_integer() && v->get<std::int64_t>() >= 0))
        wrong(key, "a non-negative integer");
    return v->get<std::uint64_t>();
}

std::optional<std::map<std::string, std::string>> executor_config::string_map(std::string_view key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    std::map<std::string, std::string> out;
    if (!v->is_object()) wrong(key, "an object of strings");
    for (const auto& [name, value] : v->items()) {
        if (!value.is_string()) wrong(key, "an object of strings");
        out.emplace(name, value.get<std::string>());
    }
    return out;
}

std::optional<std::map<std::string, std::string>> executor_config::environment(std::string_view key) const {
    const auto* v = find(key);
    if (!v || v->is_object()) return string_map(key);
    std::map<std::string, std::string> out;
    const auto items = string_list(key);
    for (const auto& item : *items)
        for (auto& [name, value] : parse_env_assignment(item)) out[name] = std::move(value);
    return out;
}

std::optional<std::vector<std::string>> executor_config::string_list(std::string_view key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_string()) return std::vector<std::string>{v->get<std::string>()};
    std::vector<std::string> out;
    if (!v->is_array()) wrong(key, "a string or an array of strings");
    for (const auto& item : *v) {
        if (!item.is_string()) wrong(key, "a string or an array of strings");
        out.push_back(item.get<std::string>());
    }
    return out;
}

std::optional<bool> executor_config::boolean(std::string_view key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) wrong(key, "true or false");
    return v->get<bool>();
}

std::optional<double> executor_config::positive(std::string_view key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number() || !(v->get<double>() > 0)) wrong(key, "a positive number");
    return v->get<double>();
}

std::optional<std::uint64_t> executor_config::bytes(std::string_view key) const {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_number_unsigned() || (v->is_number_integer() && v->get<std::int64_t>() > 0))
        return v->get<std::uint64_t>();
    if (v->is_string()) {
        const std::string text = v->get<std::string>();
        char* end = nullptr;
        const double number = std::strtod(text.c_str(), &end);
        std::string unit(end ? end : "");
        std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::tolower(c); });
        if (unit.ends_with("b") && unit.size() > 1) unit.pop_back();
        static const std::map<std::string, double> units = {
            {"", 1}, {"b", 1}, {"k", 1024.0}, {"m", 1024.0 * 1024}, {"g", 1024.0 * 1024 * 1024}};
        const auto u = units.find(unit);
        if (end != text.c_str() && number > 0 && u != units.end() && number * u->second < 1e18)
            return static_cast<std::uint64_t>(number * u->second);
    }
    wrong(key, "a number of bytes or a size like \"512m\" or \"1g\"");
}

void read_docker_tls(const executor_config& c, docker_tls_options& tls) {
    if (auto v = c.boolean("tls_verify")) tls.verify = *v;
    if (auto v = c.string("tls_ca")) tls.ca = *v;
    if (auto v = c.string("tls_cert")) tls.cert = *v;
    if (auto v = c.string("tls_key")) tls.key = *v;
}

}  // namespace kernex::detail
