// `kernex mcp`: serves the Model Context Protocol, over stdio or Streamable
// HTTP, so that an agent calls run_code / run_cell as tools. The executor
// options are flags that each set one key of make_executor's config, as in
// `kernex exec`; the session flags choose where kernels run. The server
// itself is src/mcp.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <tuple>

#include "cli/commands.hpp"
#include "cli/signal_forwarding.hpp"
#include "kernex/error.hpp"
#include "kernex/executor.hpp"
#include "kernex/gateway.hpp"
#include "mcp/server.hpp"

namespace kernex::cli {

namespace {

struct mcp_args {
    std::string executor = "local";
    std::string config_file;
    nlohmann::json config = nlohmann::json::object();  // the executor options given
    // Each executor option's flag ("work_dir" -> "--work-dir"), for messages:
    // the library's name keys, the user typed flags (as kernex exec's).
    std::map<std::string, std::string> flags{
        {"timeout", "--timeout"}, {"sandbox", "--sandbox"}, {"inherit_env", "--inherit-env"},
        {"resident_runner", "--resident-runner"}, {"save_full_output", "--save-full-output"}};
    mcp::server_options server;
    std::string gateway_url;
    std::string gateway_token;
    std::string http;  // [HOST:]PORT; empty: stdio
    std::string host;
    mcp::http_options http_options;
    double timeout = 60;
    double session_idle = 1800;
    double confirm_wait = 600;
};

nlohmann::json read_config(const std::string& file) {
    std::ifstream in(file);
    if (!in) throw error(errc::not_found, "cannot read --config " + file);
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        throw error(errc::invalid_argument, "--config " + file + " is not a JSON object (make_executor's config)");
    return j;
}

bool loopback(const std::string& host) { return host == "127.0.0.1" || host == "::1" || host == "localhost"; }

int run(mcp_args& args) {
    nlohmann::json config = args.config_file.empty() ? nlohmann::json::object() : read_config(args.config_file);
    for (const auto& [key, value] : args.config.items()) config[key] = value;  // flags win over the file
    if (!config.contains("executor") || args.executor != "local") config["executor"] = args.executor;
    const std::string executor = config.value("executor", "");
    if (executor != "local" && executor != "docker")
        throw error(errc::invalid_argument, "run_code's executor is local or docker, not '" + executor +
                                                "' (stateful kernels are run_cell's: --kernel, --docker-image, --gateway)");
    config["timeout"] = args.timeout;
    if (config.value("save_full_output", false) && !config.contains("work_dir"))
        throw error(errc::invalid_argument, "--save-full-output needs --work-dir: run_code's temporary work dir is "
                                            "removed when the call ends, and the file with it");
    // The options checked now, in the words of the flags that gave them (a
    // key from --config keeps its name: the file says it).
    std::map<std::string, std::string> given = args.flags;
    for (const auto& [key, value] : config.items())
        if (key != "timeout" && !args.config.contains(key)) given.erase(key);
    try {
        in_flag_words_of(given, [&] {
            make_executor(config)->stop();
            return 0;
        }, &args.flags);
    } catch (const error& e) {
        const std::string text = e.what();
        if (e.code() != errc::invalid_argument || args.config_file.empty() ||
            text.find("option '") == std::string::npos)
            throw;
        throw error(e.code(), "--config " + args.config_file + ": " + text);
    }
    mcp::server_options& options = args.server;
    options.executor_config = config;
    options.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(args.timeout * 1000));
    options.session_idle = std::chrono::milliseconds(static_cast<std::int64_t>(args.session_idle * 1000));
    options.confirm_wait = std::chrono::milliseconds(static_cast<std::int64_t>(args.confirm_wait * 1000));
    if (config.contains("max_output") && config["max_output"].is_number_unsigned())
        options.max_output = config["max_output"].get<std::size_t>();
    if (config.contains("work_dir") && config["work_dir"].is_string()) options.work_dir = config["work_dir"];
    if (auto g = gateway_options::from_arguments(args.gateway_url, args.gateway_token)) options.gateway = *g;

    int stop[2];
    if (::pipe2(stop, O_CLOEXEC) != 0) throw error(errc::io_error, "cannot make a pipe");
    struct closer {
        int* fds;
        ~closer() {
            ::close(fds[0]);
            ::close(fds[1]);
        }
    } closing{stop};
    // SIGTERM, SIGINT, SIGHUP: stop serving, then shut every kernel down.
    signal_forwarding forwarding([&stop](int) { [[maybe_unused]] auto n = ::write(stop[1], "x", 1); });

    if (args.http.empty()) return mcp::serve_stdio(options, STDIN_FILENO, STDOUT_FILENO, stop[0]);

    std::string host = args.host.empty() ? "127.0.0.1" : args.host;
    std::string port = args.http;
    if (const auto colon = args.http.rfind(':'); colon != std::string::npos) {
        std::string given = args.http.substr(0, colon);
        if (given.size() > 2 && given.front() == '[' && given.back() == ']') given = given.substr(1, given.size() - 2);
        port = args.http.substr(colon + 1);
        if (!loopback(given) && given != args.host)
            throw error(errc::invalid_argument, "--http " + args.http + " is not a loopback address: serving on " + given +
                                                    " needs --host " + given + " as well");
        host = given == "localhost" ? "127.0.0.1" : given;
    }
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 ||
        std::stoul(port) > 65535)
        throw error(errc::invalid_argument, "--http takes [HOST:]PORT, not '" + args.http + "'");
    args.http_options.host = host;
    args.http_options.port = static_cast<std::uint16_t>(std::stoul(port));
    const bool generated = args.http_options.token.empty();
    return mcp::serve_http(options, args.http_options, stop[0], [generated](const std::string& url, const std::string& token) {
        std::cerr << "kernex: mcp listening on " << url << "\n";
        if (generated) std::cerr << "kernex: mcp bearer token: " << token << "\n";
        std::cerr << std::flush;
    });
}

}  // namespace

command_runner add_mcp_command(CLI::App& app) {
    auto args = std::make_shared<mcp_args>();
    auto* cmd = app.add_subcommand(
        "mcp",
        "Serve the Model Context Protocol (stdio, or Streamable HTTP with --http): tools run_code (stateless,\n"
        "in the executor), run_cell (stateful, in a Jupyter kernel session), start_session, list_sessions,\n"
        "restart_session, close_session, list_kernels. Ends on stdin EOF (stdio) or SIGTERM, shutting every\n"
        "kernel down. See docs/mcp.md.");
    cmd->add_option("--executor", args->executor, "run_code's executor: local, docker")->capture_default_str();
    cmd->add_option("--config", args->config_file, "JSON file of make_executor's config for run_code (flags override it)");
    config_option<std::string>(cmd, args, "--work-dir", "work_dir",
                               "Where run_code's blocks and the kernels run (default: a temporary dir per run_code call)");
    cmd->add_flag_callback("--sandbox", [args] { args->config["sandbox"] = true; },
                           "local: run each block in a bubblewrap sandbox (no network, read-only system, only the work dir writable)");
    cmd->add_flag_callback("--inherit-env", [args] { args->config["inherit_env"] = true; },
                           "local, jupyter (a kernel it starts): blocks get kernex's whole environment (API keys and\n"
                           "tokens included), not a clean one");
    config_option<std::string>(cmd, args, "--image", "image", "docker: the image run_code's blocks run in (never pulled)");
    // run_code's limits, as kernex exec's (make_executor's keys).
    config_option<std::string>(cmd, args, "--memory", "memory", "docker: run_code's memory limit (512m, 2g; 0: none; default 1g)");
    config_option<double>(cmd, args, "--cpus", "cpus", "docker: run_code's CPUs (1.5; default: no limit)");
    config_option<std::int64_t>(cmd, args, "--pids-limit", "pids_limit", "docker: run_code's processes at once (0: none; default 256)");
    for (const auto& [flag, key, help] : {std::tuple{"--rlimit-cpu", "rlimit_cpu", "CPU seconds per process"},
                                          {"--rlimit-as", "rlimit_as", "address space bytes per process"},
                                          {"--rlimit-fsize", "rlimit_fsize", "largest file a block may write, bytes"},
                                          {"--rlimit-nofile", "rlimit_nofile", "open files per process"},
                                          {"--rlimit-nproc", "rlimit_nproc", "processes of the user (counted host-wide; root is exempt)"}})
        config_option<std::uint64_t>(cmd, args, flag, key, std::string("local --sandbox: run_code's ") + help);
    config_option<std::vector<std::string>>(cmd, args, "--env", "env",
                                            "local, docker, jupyter (a kernel it starts): NAME=VALUE (or NAME: kernex's "
                                            "value) added to the environment run_code's blocks get (repeatable)");
    cmd->add_option("--timeout", args->timeout, "Seconds a call may run, and the most a call may ask for")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    config_option<std::uint64_t>(cmd, args, "--max-output", "max_output",
                                 "Bytes of a call's output kept (default 1048576); the rest is counted");
    cmd->add_flag_callback("--save-full-output", [args] { args->config["save_full_output"] = true; },
                           "Also keep all of a run_code call's output in a new file of its work dir,\n"
                           "kernex-output.txt, named in the output when some was dropped");
    config_option<std::vector<std::string>>(cmd, args, "--path-prefix", "path_prefix",
                                            "local: a directory put before PATH for run_code's blocks (a virtualenv's bin; "
                                            "repeatable; with --sandbox bound read-only)");
    interpreter_option(cmd, args,
                       "local: LANG=PROGRAM runs run_code's LANG blocks with PROGRAM instead of the usual one (repeatable)");
    config_option<std::uint64_t>(cmd, args, "--max-output-head", "max_output_head",
                                 "Of --max-output, the bytes kept from the start (default 60 %); the rest are the last ones");
    config_option<double>(cmd, args, "--block-timeout", "block_timeout",
                          "Seconds each block of a run_code call may run (within the call's --timeout)");
    cmd->add_flag_function("--resident-runner,!--no-resident-runner",
                           [args](std::int64_t n) { args->config["resident_runner"] = n > 0; },
                           "local --sandbox, docker: run_code's blocks run by a resident runner (the default), or\n"
                           "each in a bubblewrap or an Engine API exec of its own");
    cmd->add_option("--kernel", args->server.kernel_name, "Sessions: the default kernelspec")->capture_default_str();
    cmd->add_option_function<std::string>(
        "--docker-image", [args](const std::string& image) { args->server.docker_image = image; },
        "Sessions: run each kernel in a Docker container of this image (network none)");
    cmd->add_option("--gateway", args->gateway_url,
                    "Sessions: start kernels on this Jupyter Server / gateway (default $KERNEX_GATEWAY_URL)");
    cmd->add_option("--gateway-token", args->gateway_token, "The gateway's token (default $KERNEX_GATEWAY_TOKEN)");
    cmd->add_flag("--confirm", args->server.confirm,
                  "Ask the user (MCP elicitation, showing the exact code) before each run_code and run_cell; "
                  "a client without elicitation is refused at initialize");
    cmd->add_option("--confirm-wait", args->confirm_wait,
                    "With --confirm: seconds a question waits for the user's answer; unanswered, the code does not run")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cmd->add_option("--max-sessions", args->server.max_sessions, "Kernel sessions open at once")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cmd->add_option("--session-idle", args->session_idle, "Seconds after which an idle session is shut down")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cmd->add_option("--http", args->http, "Serve Streamable HTTP on [HOST:]PORT (loopback; 0: any free port) at /mcp");
    cmd->add_option("--host", args->host, "Serve HTTP on this non-loopback address (anyone who can reach it and has the token runs code)");
    cmd->add_option("--http-token", args->http_options.token,
                    "Bearer token HTTP clients must send (default: one generated and printed on stderr)");
    cmd->add_option("--allow-origin", args->http_options.allowed_origins,
                    "An Origin allowed besides localhost's (browser clients; repeatable)");
    return [args] { return run(*args); };
}

}  // namespace kernex::cli
