// `kernex exec`: runs the code blocks of a markdown message (a model's reply)
// with an executor chosen by name, printing the output as it arrives. The
// executor options are flags that each set one key of make_executor's config;
// an executor refuses the keys that are not its own, so adding an executor's
// flag is one config_option line.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>

#include "cli/commands.hpp"
#include "cli/confirm_prompt.hpp"
#include "cli/signal_forwarding.hpp"
#include "cli/terminal_text.hpp"
#include "kernex/error.hpp"
#include "kernex/executor.hpp"
#include "kernex/gateway.hpp"
#include "kernex/output_files.hpp"

namespace kernex::cli {

namespace {

struct exec_args {
    std::string executor = "local";
    std::string language = "python";
    bool json = false;
    bool confirm = false;
    bool describe = false;
    std::string file = "-";
    std::string token_file;
    colour_mode colour = colour_mode::automatic;
    double timeout = 60;                  // per block; 0: none
    double total_timeout = 0;             // the whole message; 0: none
    std::optional<double> ready_timeout;  // jupyter: the kernel's start
    nlohmann::json config = nlohmann::json::object();  // the executor options given
    // Each executor option's flag ("kernel_name" -> "--kernel"): the
    // library's messages name options, the user typed flags.
    std::map<std::string, std::string> flags{{"block_timeout", "--timeout"},
                                             {"timeout", "--total-timeout"},
                                             {"startup_timeout", "--ready-timeout"},
                                             {"interpreters", "--interpreter"},
                                             {"inherit_env", "--inherit-env"},
                                             {"sandbox", "--sandbox"},
                                             {"resident_runner", "--resident-runner"},
                                             {"read_only", "--read-only"},
                                             {"tls_verify", "--tls-verify"},
                                             {"save_full_output", "--save-full-output"},
                                             {"no_new_privileges", "--no-new-privileges"},
                                             {"auto_remove", "--auto-remove"},
                                             {"stop_container", "--stop-container"},
                                             {"gateway_headers", "--gateway-header"},
                                             // the jupyter executor's other names for the container flags
                                             {"docker_network", "--network"},
                                             {"docker_memory", "--memory"},
                                             {"docker_cpus", "--cpus"},
                                             {"docker_pids_limit", "--pids-limit"}};
};

// Where the error a message's blocks ended with came from: the block (from
// 1) and the line of the message.
struct error_place {
    std::size_t block = 0;
    int line = 0;
    bool exact = false;  // the traceback named the line (else: the block's first)
};

// The digits at text[at...], or -1.
int number_at(std::string_view text, std::size_t at) {
    int n = 0, digits = 0;
    for (; at < text.size() && digits < 9 && text[at] >= '0' && text[at] <= '9'; ++at, ++digits)
        n = n * 10 + (text[at] - '0');
    return digits > 0 ? n : -1;
}

// The innermost frame of the failure's traceback that lies in a block of
// this message: a block's file ('File ".../tmp_code_X.py", line 3', bash's
// "tmp_code_X.sh: line 3:", node's "tmp_code_X.js:3") for the local and
// docker executors, IPython's "Cell In [7], line 2" (or "Input In [7], in
// <cell line: 2>") for the jupyter executor, its execution counts inferred
// from the failing block's (the first frame after the last "Traceback (most
// recent call last)"): one count per block run. Without such a frame, the
// failing block's first line. nullopt when no block failed (ok, timeout,
// interrupted, a block refused).
std::optional<error_place> find_error_place(const code_result& result, const std::vector<code_block>& blocks) {
    if (result.blocks == 0 || result.exit_code == 0 || result.exit_code == 124 || result.exit_code == 130) return {};
    std::vector<std::size_t> ran;  // indices of the blocks that ran, in order
    for (const auto& a : result.approvals) {
        if (a.verdict == block_verdict::refused) return {};
        if (a.verdict == block_verdict::approved) ran.push_back(a.index);
    }
    if (result.approvals.empty())
        for (std::size_t i = 0; i < std::min(result.blocks, blocks.size()); ++i) ran.push_back(i);
    if (ran.empty() || ran.back() >= blocks.size()) return {};
    const std::string text = strip_ansi(result.output);
    std::optional<std::size_t> at;  // the innermost frame's place in text
    error_place found{ran.back(), blocks[ran.back()].line, false};
    auto frame = [&](std::size_t where, std::size_t block, int line) {
        if (line < 1 || (at && where < *at)) return;
        at = where;
        found = {block, blocks[block].line + line - 1, true};
    };
    // The files the blocks ran from: one per block run, else the last one is the failing block's.
    std::map<std::string, std::size_t> files;
    if (result.code_files.size() == ran.size())
        for (std::size_t j = 0; j < ran.size(); ++j) files[result.code_files[j].filename().string()] = ran[j];
    else if (!result.code_files.empty())
        files[result.code_files.back().filename().string()] = ran.back();
    for (const auto& [name, block] : files) {
        if (name.empty()) continue;
        for (std::size_t p = text.find(name); p != std::string::npos; p = text.find(name, p + 1)) {
            const std::string_view after = std::string_view(text).substr(p + name.size());
            for (std::string_view lead : {"\", line ", ": line ", ":"})
                if (after.starts_with(lead)) {
                    frame(p, block, number_at(after, lead.size()));
                    break;
                }
        }
    }
    if (at) return found;
    // IPython's frames: (place, execution count, line).
    struct cell_frame {
        std::size_t where;
        int count, line;
    };
    std::vector<cell_frame> frames;
    for (std::string_view lead : {"Cell In [", "Cell In[", "Input In ["})
        for (std::size_t p = text.find(lead); p != std::string::npos; p = text.find(lead, p + 1)) {
            const std::size_t n = p + lead.size();
            const int count = number_at(text, n);
            if (count < 0) continue;
            const std::size_t close = text.find(']', n);
            if (close == std::string::npos) continue;
            const std::string_view after = std::string_view(text).substr(close + 1);
            int line = -1;
            if (after.starts_with(", line ")) line = number_at(after, 7);
            else if (after.starts_with(", in <cell line: ")) line = number_at(after, 17);
            frames.push_back({p, count, line});
        }
    if (frames.empty()) return found;
    std::sort(frames.begin(), frames.end(), [](const auto& a, const auto& b) { return a.where < b.where; });
    const std::size_t anchor = text.rfind("Traceback (most recent call last)");
    const auto first = std::find_if(frames.begin(), frames.end(), [&](const cell_frame& f) {
        return anchor != std::string::npos && f.where > anchor;
    });
    // With no traceback header (a SyntaxError), the last frame is the failing block's.
    const int failing_count = first != frames.end() ? first->count : frames.back().count;
    for (const auto& f : frames) {
        if (anchor != std::string::npos && first != frames.end() && f.where < first->where) continue;
        const long back = static_cast<long>(failing_count) - f.count;  // blocks before the failing one
        if (back < 0 || back >= static_cast<long>(ran.size())) continue;
        frame(f.where, ran[ran.size() - 1 - static_cast<std::size_t>(back)], f.line);
    }
    return found;
}

int run(const exec_args& args) {
    // Signals first: a kernel (or container) the executor starts must never
    // outlive a Ctrl-C that came while it started. The blocks run in a
    // session of their own, so Ctrl-C reaches only us: pass it on rather than
    // die and orphan them.
    std::mutex executor_mutex;
    code_executor* running = nullptr;  // set while the executor exists
    signal_forwarding forwarding([&](int) {
        std::lock_guard lock(executor_mutex);
        if (running) running->interrupt();
    });

    // The same timeouts as `kernex run`'s: checked alike, 0 meaning none
    // (for the executors, which take only a limit: a year).
    check_seconds("--timeout", args.timeout, "no limit");
    check_seconds("--total-timeout", args.total_timeout, "no limit");
    if (args.ready_timeout) check_seconds("--ready-timeout", *args.ready_timeout);
    nlohmann::json config = args.config;
    config["executor"] = args.executor;
    if (args.timeout > 0) config["block_timeout"] = args.timeout;
    config["timeout"] = args.total_timeout > 0 ? args.total_timeout : max_seconds;
    if (args.ready_timeout) {
        if (args.executor != "jupyter") throw error(errc::invalid_argument, "--ready-timeout is for --executor jupyter");
        config["startup_timeout"] = *args.ready_timeout;
    }
    if (!args.token_file.empty()) config["gateway_token"] = read_token_file(args.token_file);
    // Saved outputs are named after the message, as kernex run names them after its file.
    if (args.executor == "jupyter" && !config.contains("output_stem"))
        config["output_stem"] = args.file == "-" ? std::string("stdin") : std::filesystem::path(args.file).stem().string();
    if (args.executor == "jupyter")  // $KERNEX_GATEWAY_URL / _TOKEN as defaults for the flags
        if (auto g = gateway_options::from_arguments(config.value("gateway_url", ""), config.value("gateway_token", ""))) {
            config["gateway_url"] = g->url;
            if (!g->token.empty()) config["gateway_token"] = g->token;
        }
    if (config.value("save_full_output", false) && args.executor != "jupyter" && !config.contains("work_dir"))
        throw error(errc::invalid_argument, "--save-full-output needs --work-dir: a temporary work dir is removed "
                                            "when the blocks have run, and the file with it");
    // The library's complaints about the options, in flags.
    auto in_flags = [&args](auto&& make) { return in_flag_words_of(args.flags, make); };
    if (args.describe) {
        std::cout << in_flags([&] { return describe_executor(config); }) << std::flush;
        return 0;
    }
    // No terminal to ask on: refused before anything is read or started.
    std::optional<terminal_prompt> prompt;
    if (args.confirm) prompt.emplace();
    // The message is read and checked before anything starts.
    const std::vector<code_block> blocks = extract_code_blocks(read_input(args.file), args.language);
    std::unique_ptr<code_executor> executor = in_flags([&] { return make_executor(config); });
    if (prompt) executor->set_approve(prompt->hook([&forwarding] { return forwarding.received() != 0; }));
    {
        std::lock_guard lock(executor_mutex);
        running = executor.get();
    }
    struct forget {
        std::mutex& m;
        code_executor*& p;
        ~forget() {
            std::lock_guard lock(m);
            p = nullptr;
        }
    } forget_executor{executor_mutex, running};
    if (forwarding.received()) {  // a signal while it started: run nothing
        executor->stop();
        return 130;
    }

    output_handler print;
    const stream_style style(args.colour, STDOUT_FILENO);
    if (!args.json)
        print = [&executor, &style](std::string_view text) {
            const std::string safe = style.text(text);
            if (std::fwrite(safe.data(), 1, safe.size(), stdout) != safe.size() || std::fflush(stdout) != 0)
                executor->interrupt();  // nobody is reading any more
        };
    // No blocks is kernex's message, not the code's output: on stderr.
    if (blocks.empty() && !args.json) print = [](std::string_view text) { std::cerr << text << std::flush; };
    code_result result = executor->execute(blocks, print);
    executor->stop();
    // Where the error came from, in the message's words (as kernex run says a file's cell and line).
    const auto failed_at = find_error_place(result, blocks);
    const std::string source = args.file == "-" ? std::string("stdin") : args.file;
    if (failed_at && !args.json)
        std::cerr << "kernex: " << source << (failed_at->exact ? " " : ", ") << "block " << failed_at->block + 1
                  << (failed_at->exact ? ", line " : " (line ") << failed_at->line << (failed_at->exact ? "" : ")")
                  << "\n" << std::flush;
    if (args.json) {
        nlohmann::json j = result.to_json();
        if (failed_at) j["error_at"] = {{"file", args.file}, {"block", failed_at->block + 1}, {"line", failed_at->line}};
        // stop() removed the temporary work dir, and the files in it.
        if (result.temporary_work_dir) j["code_files_removed"] = true;
        std::cout << j.dump() << "\n" << std::flush;
    }
    return std::clamp(result.exit_code, 0, 255);
}

}  // namespace

command_runner add_exec_command(CLI::App& app) {
    auto args = std::make_shared<exec_args>();
    auto* cmd = app.add_subcommand(
        "exec",
        "Run the code blocks of a markdown message (FILE, or stdin) in order, stopping at the first failure,\n"
        "and print their output as it arrives.\n"
        "Exit status: the result's exit code (0 ok, 1 error, 124 timeout, 130 interrupted, else the\n"
        "failing block's); 2 for usage and setup errors.");
    cmd->add_option("--executor", args->executor, "Executor: local, jupyter, docker")->capture_default_str();
    config_option<std::string>(cmd, args, "--work-dir", "work_dir",
                               "local, docker: the directory blocks are written to and run in (default: a\n"
                               "temporary one, removed after). jupyter: the kernel's working directory (created\n"
                               "if missing; with --docker-image, bound at /workspace) and the default --output-dir;\n"
                               "blocks are sent to the kernel, not written to files");
    config_option<std::string>(cmd, args, "--image", "image",
                               "Image the docker executor runs blocks in (present in the daemon: it is never pulled)");
    cmd->add_option("-t,--timeout", args->timeout,
                    "Seconds per block, 0 to 31536000; a block over it is stopped (0: none; default 60)");
    cmd->add_option("--total-timeout", args->total_timeout,
                    "Seconds for all the blocks of the message together (0: none, the default)");
    cmd->add_option_function<double>(
        "--ready-timeout", [args](double seconds) { args->ready_timeout = seconds; },
        "jupyter: seconds to wait for the kernel to be ready (default 60)");
    config_option<std::uint64_t>(cmd, args, "--max-output", "max_output",
                                 "Bytes of output kept (default 1048576): the first and the last of them, with\n"
                                 "[\u2026 N bytes dropped \u2026] between");
    config_option<std::uint64_t>(cmd, args, "--max-output-head", "max_output_head",
                                 "Of --max-output, the bytes kept from the start (default 60 %); the rest are the last ones");
    cmd->add_flag_callback("--save-full-output", [args] { args->config["save_full_output"] = true; },
                           "Also keep all of the output in a new file of the work dir (jupyter: of --output-dir),\n"
                           "kernex-output.txt, named in the output when some was dropped (removed with a temporary\n"
                           "work dir)");
    config_option<std::string>(cmd, args, "--gateway", "gateway_url",
                               "jupyter: run the kernel on this Jupyter Server / gateway (default $KERNEX_GATEWAY_URL)");
    auto* token = config_option<std::string>(cmd, args, "--token", "gateway_token",
                                             std::string("jupyter: ") + token_help);
    cmd->add_option("--token-file", args->token_file, std::string("jupyter: ") + token_file_help)->excludes(token);
    auto* existing = config_option<std::string>(
        cmd, args, "--existing", "connection_file",
        "jupyter: run the blocks in this running kernel (the connection file `kernex kernel start`\n"
        "prints) and leave it running: state carries over to the next call (an agent's turns)");
    config_option<std::string>(cmd, args, "--kernel-id", "kernel_id",
                               "jupyter, with --gateway: run the blocks in this kernel on the server and leave it\n"
                               "running (one of GET /api/kernels)")
        ->excludes(existing);
    config_option<std::string>(cmd, args, "--gateway-ca", "gateway_ca", "jupyter: PEM file of the CAs to trust (https)");
    config_option<std::string>(cmd, args, "--kernel", "kernel_name",
                               "jupyter: the kernelspec to start (default python3; see `kernex kernelspec list`)");
    config_option<std::string>(cmd, args, "--docker-image", "docker_image",
                               "jupyter: run the kernel in a Docker container of this image (never pulled;\n"
                               "network none; --work-dir is bound at /workspace)");
    config_option<std::string>(cmd, args, "--memory", "memory",
                               "docker, jupyter --docker-image: memory limit (512m, 2g; 0: none; default 1g)");
    config_option<double>(cmd, args, "--cpus", "cpus", "docker, jupyter --docker-image: CPUs (1.5; default: no limit)");
    config_option<std::int64_t>(cmd, args, "--pids-limit", "pids_limit",
                                "docker, jupyter --docker-image: processes (0: none; default 256)");
    config_option<std::string>(cmd, args, "--network", "network_mode",
                               "docker, jupyter --docker-image: network mode (default none; host, bridge, a network)");
    config_option<std::string>(cmd, args, "--user", "user",
                               "docker, jupyter --docker-image: uid:gid the code runs as (default: yours)");
    cmd->add_flag_function("--read-only,!--no-read-only", [args](std::int64_t n) { args->config["read_only"] = n > 0; },
                           "docker, jupyter --docker-image: a read-only root with a tmpfs /tmp (the default), or not");
    config_option<std::string>(cmd, args, "--docker-host", "docker_host",
                               "docker, jupyter --docker-image: the daemon, unix:///path.sock or tcp://HOST:PORT\n"
                               "(default $DOCKER_HOST, else unix:///var/run/docker.sock)");
    config_option<std::string>(cmd, args, "--files", "files",
                               "docker: how files reach the container: bind (the work dir bound at /workspace; the\n"
                               "default for a unix:// daemon) or copy (through the Engine API; the default for tcp://)")
        ->check(CLI::IsMember({"bind", "copy"}));
    cmd->add_flag_function("--tls-verify,!--no-tls-verify", [args](std::int64_t n) { args->config["tls_verify"] = n > 0; },
                           "docker, jupyter --docker-image: TLS to a tcp:// daemon, its certificate verified, with\n"
                           "a client certificate (default: on when $DOCKER_TLS_VERIFY is set or a --tls-* file given)");
    config_option<std::string>(cmd, args, "--tls-ca", "tls_ca",
                               "docker, jupyter --docker-image: the CA of the daemon's certificate (default\n"
                               "$DOCKER_CERT_PATH/ca.pem, else ~/.docker/ca.pem)");
    config_option<std::string>(cmd, args, "--tls-cert", "tls_cert",
                               "docker, jupyter --docker-image: the client certificate (default cert.pem there)");
    config_option<std::string>(cmd, args, "--tls-key", "tls_key",
                               "docker, jupyter --docker-image: the client certificate's key (default key.pem there)");
    config_option<std::string>(cmd, args, "--container-name", "container_name",
                               "docker: the container's name (default kernex-<12 random hex digits>)");
    config_option<std::vector<std::string>>(cmd, args, "--cap-add", "cap_add",
                                            "docker: a capability the blocks keep (every one is dropped but these; "
                                            "repeatable)");
    cmd->add_flag_function("--no-new-privileges,!--new-privileges",
                           [args](std::int64_t n) { args->config["no_new_privileges"] = n > 0; },
                           "docker: a setuid binary or file capability grants nothing (the default), or it does");
    cmd->add_flag_function("--auto-remove,!--no-auto-remove", [args](std::int64_t n) { args->config["auto_remove"] = n > 0; },
                           "docker: the container is removed when it is stopped at the end (the default), or kept");
    cmd->add_flag_function("--stop-container,!--no-stop-container",
                           [args](std::int64_t n) { args->config["stop_container"] = n > 0; },
                           "docker: the container is stopped at the end (the default), or left running (then\n"
                           "nothing removes it)");
    config_option<double>(cmd, args, "--request-timeout", "request_timeout",
                          "docker: seconds each Engine API request (create, start, inspect) may take (default 30)");
    config_option<std::uint64_t>(cmd, args, "--max-copy-back", "max_copy_back",
                                 "docker --files copy: bytes of files copied back after a block at most (default\n"
                                 "268435456); the rest is left and said");
    cmd->add_option_function<std::vector<std::string>>(
        "--gateway-header",
        [args](const std::vector<std::string>& items) {
            for (const auto& item : items) {
                const auto colon = item.find(':');
                if (colon == 0 || colon == std::string::npos)
                    throw CLI::ValidationError("--gateway-header", "'" + item + "': give NAME: VALUE");
                const auto value = item.find_first_not_of(' ', colon + 1);
                args->config["gateway_headers"][item.substr(0, colon)] =
                    value == std::string::npos ? std::string() : item.substr(value);
            }
        },
        "jupyter, with --gateway: an HTTP header sent to the server, 'NAME: VALUE' (repeatable)")
        ->allow_extra_args(false);
    config_option<std::string>(cmd, args, "--output-dir", "output_dir",
                               "jupyter: where images and HTML outputs are saved (default: --work-dir, else the\n"
                               "current directory; an existing name is never overwritten)");
    config_option<std::string>(cmd, args, "--output-stem", "output_stem",
                               "jupyter: saved outputs are named STEM-blockN-n.EXT (default: FILE's stem, or stdin)");
    config_option<std::vector<std::string>>(cmd, args, "--env", "env", "local, docker, jupyter (a kernel it starts): NAME=VALUE (or NAME: kernex's value)\n"
                                            "added to the environment the code gets (local, jupyter: to the clean one; repeatable)");
    config_option<std::vector<std::string>>(cmd, args, "--path-prefix", "path_prefix",
                                            "local: a directory put before PATH for the blocks (a virtualenv's bin; "
                                            "repeatable; with --sandbox bound read-only)");
    interpreter_option(cmd, args, "local: LANG=PROGRAM runs LANG's blocks with PROGRAM instead of the usual one (repeatable)");
    cmd->add_flag_callback("--inherit-env", [args] { args->config["inherit_env"] = true; }, "local, jupyter (a kernel it starts): blocks get kernex's whole environment (API keys and\n"
                           "tokens included), not a clean one");
    cmd->add_flag_callback("--sandbox", [args] { args->config["sandbox"] = true; }, "local: run each block in a bubblewrap sandbox (no network, read-only system, only the work dir writable)");
    cmd->add_flag_function("--resident-runner,!--no-resident-runner",
                           [args](std::int64_t n) { args->config["resident_runner"] = n > 0; },
                           "local --sandbox, docker: the blocks run by a resident runner in one sandbox or in the\n"
                           "container (the default), or each in a bubblewrap or an Engine API exec of its own");
    config_option<std::uint64_t>(cmd, args, "--rlimit-cpu", "rlimit_cpu", "local --sandbox: CPU seconds per process");
    config_option<std::uint64_t>(cmd, args, "--rlimit-as", "rlimit_as", "local --sandbox: address space bytes per process");
    config_option<std::uint64_t>(cmd, args, "--rlimit-fsize", "rlimit_fsize", "local --sandbox: largest file a block may write, bytes");
    config_option<std::uint64_t>(cmd, args, "--rlimit-nofile", "rlimit_nofile", "local --sandbox: open files per process");
    config_option<std::uint64_t>(cmd, args, "--rlimit-nproc", "rlimit_nproc", "local --sandbox: processes of the user (counted host-wide; root is exempt)");
    cmd->add_option("--lang", args->language, "Language of blocks without one (and without a shebang)")
        ->capture_default_str();
    cmd->add_flag("--json", args->json, "Print the result as one JSON object instead of the output");
    cmd->add_flag("--confirm", args->confirm,
                  "Ask on the terminal before each block runs, showing its code: y(es), n(o: skip it),\n"
                  "a(ll: this and the rest), q(uit: nothing more runs). Refused without a terminal");
    cmd->add_flag("--describe", args->describe,
                  "Print what a model needs to know to use this executor (languages, where blocks run,\n"
                  "the work dir, whether state persists, limits): text for a system message. Runs nothing");
    add_colour_option(cmd, args->colour);
    cmd->add_option("file", args->file, "Markdown message to read; '-' or none: stdin");
    return [args] { return run(*args); };
}

}  // namespace kernex::cli
