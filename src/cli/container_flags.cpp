#include "cli/container_flags.hpp"

namespace kernex::cli {

void add_container_flags(CLI::App* cmd, container_flags& flags, CLI::Option* needs) {
    cmd->add_option("--memory", flags.memory, "Container: memory limit, swap included (512m, 2g; 0: none; default 1g)")
        ->transform(CLI::AsSizeValue(false))
        ->needs(needs);
    cmd->add_option("--cpus", flags.cpus, "Container: CPUs it may use (1.5; default: no limit)")->needs(needs);
    cmd->add_option("--pids-limit", flags.pids_limit, "Container: processes (0: none; default 256)")->needs(needs);
    cmd->add_option("--network", flags.network, "Container: network mode (default none; host, bridge, a network)")
        ->needs(needs);
    cmd->add_option("--user", flags.user, "Container: uid:gid the code runs as (default: yours)")->needs(needs);
    cmd->add_flag_function(
           "--read-only,!--no-read-only", [&flags](std::int64_t n) { flags.read_only = n > 0; },
           "Container: a read-only root with a tmpfs /tmp (the default), or a writable one")
        ->needs(needs);
}

void apply_container_flags(const container_flags& flags, docker_kernel_options& options) {
    if (flags.memory) options.memory = *flags.memory == 0 ? std::nullopt : flags.memory;
    if (flags.cpus) options.cpus = flags.cpus;
    if (flags.pids_limit) options.pids_limit = *flags.pids_limit <= 0 ? std::nullopt : flags.pids_limit;
    if (flags.network) options.network_mode = *flags.network;
    if (flags.user) options.user = flags.user;
    if (flags.read_only) options.read_only = *flags.read_only;
}

}  // namespace kernex::cli
