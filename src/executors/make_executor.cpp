// The table of executor kinds: adding one is a line here and its factory.
#include <algorithm>

#include "executors/executor_config.hpp"
#include "kernex/error.hpp"

namespace kernex {

namespace {

struct executor_kind {
    std::string_view name;
    std::vector<std::string_view> options;  // the keys it accepts besides "executor"
    std::unique_ptr<code_executor> (*make)(const nlohmann::json& config);
};

const std::vector<executor_kind>& executor_kinds() {
    static const std::vector<executor_kind> kinds = {
        {"local", {"work_dir", "timeout", "block_timeout", "max_output", "max_output_head", "save_full_output", "env", "path_prefix", "interpreters", "inherit_env", "sandbox", "resident_runner",
                    "rlimit_cpu", "rlimit_as", "rlimit_fsize", "rlimit_nofile", "rlimit_nproc"},
         detail::make_local_executor},
        {"jupyter", {"kernel_name", "connection_file", "kernel_id", "work_dir", "output_dir", "output_stem", "timeout", "block_timeout", "max_output", "max_output_head", "save_full_output",
                     "startup_timeout", "env", "inherit_env", "gateway_url", "gateway_token", "gateway_ca", "gateway_headers",
                     "docker_image", "docker_network", "docker_memory", "docker_cpus", "docker_pids_limit",
                     "docker_host", "tls_verify", "tls_ca", "tls_cert", "tls_key", "network_mode", "memory", "cpus",
                     "pids_limit", "user", "read_only"},
         detail::make_jupyter_executor},
        {"docker", {"image", "container_name", "work_dir", "timeout", "block_timeout", "max_output", "max_output_head", "save_full_output", "env", "network_mode",
                    "memory", "cpus", "pids_limit", "user", "auto_remove", "stop_container", "docker_host", "tls_verify",
                    "tls_ca", "tls_cert", "tls_key", "request_timeout", "read_only", "no_new_privileges", "cap_add", "files",
                    "max_copy_back", "resident_runner"},
         detail::make_docker_executor},
    };
    return kinds;
}

template <typename Range, typename Name>
std::string joined(const Range& items, Name name) {
    std::string out;
    for (const auto& item : items) out.append(out.empty() ? "" : ", ").append(name(item));
    return out;
}

}  // namespace

std::unique_ptr<code_executor> make_executor(const nlohmann::json& config) {
    const auto& kinds = executor_kinds();
    const std::string valid_kinds = joined(kinds, [](const executor_kind& k) { return k.name; });
    if (!config.is_object() || !config.contains("executor") || !config["executor"].is_string())
        throw error(errc::invalid_argument,
                    "an executor config is a JSON object with \"executor\": one of " + valid_kinds);
    const std::string name = config["executor"].get<std::string>();
    const auto kind = std::find_if(kinds.begin(), kinds.end(), [&](const executor_kind& k) { return k.name == name; });
    if (kind == kinds.end())
        throw error(errc::invalid_argument, "unknown executor '" + name + "'; valid executors: " + valid_kinds);
    for (const auto& [key, value] : config.items()) {
        if (key == "executor" || std::find(kind->options.begin(), kind->options.end(), key) != kind->options.end())
            continue;
        throw error(errc::invalid_argument, "unknown option '" + key + "' for executor " + name +
                                                "; valid options: " +
                                                joined(kind->options, [](std::string_view o) { return o; }));
    }
    return kind->make(config);
}

}  // namespace kernex
