// Reading an executor's options from its JSON config, and the factory
// functions make_executor's table points at (internal to the executors module).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernex/docker_client.hpp"
#include "kernex/executor.hpp"

namespace kernex::detail {

// Each accessor returns nullopt when the key is absent and throws
// kernex::error(invalid_argument), naming the executor and the option, when
// the value has the wrong shape.
class executor_config {
public:
    executor_config(const nlohmann::json& config, std::string_view executor)
        : m_config(config), m_executor(executor) {}

    std::optional<std::string> string(std::string_view key) const;
    // A positive number of seconds (fractions allowed).
    std::optional<std::chrono::milliseconds> seconds(std::string_view key) const;
    // A non-negative integer.
    std::optional<std::uint64_t> count(std::string_view key) const;
    // An object whose values are strings.
    std::optional<std::map<std::string, std::string>> string_map(std::string_view key) const;
    // A string or an array of strings.
    std::optional<std::vector<std::string>> string_list(std::string_view key) const;
    // Variables for the code: an object of strings, or "NAME=VALUE" strings
    // as --env gives them ("NAME" alone: kernex's own value, if it has one).
    std::optional<std::map<std::string, std::string>> environment(std::string_view key) const;
    std::optional<bool> boolean(std::string_view key) const;
    // A positive number (fractions allowed).
    std::optional<double> positive(std::string_view key) const;
    // Bytes: a positive integer, or a size as docker's --memory takes it ("512m", "1g").
    std::optional<std::uint64_t> bytes(std::string_view key) const;

private:
    const nlohmann::json* find(std::string_view key) const;
    [[noreturn]] void wrong(std::string_view key, std::string_view expected) const;

    const nlohmann::json& m_config;
    std::string m_executor;
};

// tls_verify, tls_ca, tls_cert, tls_key: TLS to a tcp:// Docker daemon.
void read_docker_tls(const executor_config& c, docker_tls_options& tls);

// One per executor kind, registered in make_executor.cpp.
std::unique_ptr<code_executor> make_local_executor(const nlohmann::json& config);
std::unique_ptr<code_executor> make_jupyter_executor(const nlohmann::json& config);
std::unique_ptr<code_executor> make_docker_executor(const nlohmann::json& config);

}  // namespace kernex::detail
