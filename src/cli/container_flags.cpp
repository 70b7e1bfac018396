#include "cli/container_flags.hpp"

#include "confine/environment.hpp"

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
    cmd->add_option("--docker-host", flags.docker_host,
                    "Container: the daemon, unix:///path.sock or tcp://HOST:PORT (default $DOCKER_HOST)")
        ->needs(needs);
    cmd->add_flag_function(
           "--tls-verify,!--no-tls-verify", [&flags](std::int64_t n) { flags.tls_verify = n > 0; },
           "Container: TLS to a tcp:// daemon, verified, with a client certificate (default: on when\n"
           "$DOCKER_TLS_VERIFY is set or a --tls-* file is given)")
        ->needs(needs);
    cmd->add_option("--tls-ca", flags.tls_ca, "Container: the daemon's CA (default $DOCKER_CERT_PATH/ca.pem, ~/.docker)")
        ->needs(needs);
    cmd->add_option("--tls-cert", flags.tls_cert, "Container: the client certificate (default cert.pem there)")
        ->needs(needs);
    cmd->add_option("--tls-key", flags.tls_key, "Container: the client certificate's key (default key.pem there)")
        ->needs(needs);
}

void apply_container_flags(const container_flags& flags, docker_kernel_options& options) {
    if (flags.memory) options.memory = *flags.memory == 0 ? std::nullopt : flags.memory;
    if (flags.cpus) options.cpus = flags.cpus;
    if (flags.pids_limit) options.pids_limit = *flags.pids_limit <= 0 ? std::nullopt : flags.pids_limit;
    if (flags.network) options.network_mode = *flags.network;
    if (flags.user) options.user = flags.user;
    if (flags.read_only) options.read_only = *flags.read_only;
    if (flags.docker_host) options.docker_host = *flags.docker_host;
    if (flags.tls_verify) options.tls.verify = flags.tls_verify;
    if (flags.tls_ca) options.tls.ca = *flags.tls_ca;
    if (flags.tls_cert) options.tls.cert = *flags.tls_cert;
    if (flags.tls_key) options.tls.key = *flags.tls_key;
}

void add_env_flag(CLI::App* cmd, std::vector<std::string>& assignments) {
    cmd->add_option("--env", assignments,
                    "NAME=VALUE (or NAME: kernex's value) in the kernel's environment, over the clean one and\n"
                    "the kernelspec's env (repeatable)")
        ->allow_extra_args(false)
        ->type_name("NAME[=VALUE]");
}

void apply_env_flag(const std::vector<std::string>& assignments, kernel_options& options) {
    for (const auto& item : assignments)
        for (auto& [name, value] : detail::parse_env_assignment(item)) options.env[name] = std::move(value);
}

}  // namespace kernex::cli
