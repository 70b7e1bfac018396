// The container flags that `kernex run` and `kernex kernel start` share for a
// kernel in a Docker container (--memory, --cpus, --pids-limit, --network,
// --user, --read-only/--no-read-only; the daemon: --docker-host, --tls-verify,
// --tls-ca, --tls-cert, --tls-key): each loosens or tightens one field of
// docker_kernel_options; `kernex exec` has the same flags as executor config
// keys (exec_command.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "kernex/kernel_manager.hpp"

namespace kernex::cli {

struct container_flags {
    std::optional<std::uint64_t> memory;  // bytes; 0: no limit
    std::optional<double> cpus;
    std::optional<std::int64_t> pids_limit;  // 0: no limit
    std::optional<std::string> network;
    std::optional<std::string> user;
    std::optional<bool> read_only;
    std::optional<std::string> docker_host;
    std::optional<bool> tls_verify;
    std::optional<std::string> tls_ca, tls_cert, tls_key;
};

// Adds the flags to cmd, each needing `needs` (the --docker-image option).
void add_container_flags(CLI::App* cmd, container_flags& flags, CLI::Option* needs);

// Sets in options what the flags say.
void apply_container_flags(const container_flags& flags, docker_kernel_options& options);

// The kernel's environment, for `kernex run` and `kernex kernel start`:
// --env NAME=VALUE (NAME alone: kernex's value; repeatable) on top of the
// clean set and the kernelspec's env, kernel_options::env.
void add_env_flag(CLI::App* cmd, std::vector<std::string>& assignments);
void apply_env_flag(const std::vector<std::string>& assignments, kernel_options& options);

}  // namespace kernex::cli
