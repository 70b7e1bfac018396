#include "kernex/docker_executor.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "docker/containers.hpp"
#include "executors/code_files.hpp"
#include "executors/executor_config.hpp"
#include "kernex/error.hpp"

namespace kernex {

namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

// As local_executor's, run by the programs on the container's PATH.
const std::vector<detail::file_language>& language_table() {
    static const std::vector<detail::file_language> table = {
        {{"bash"}, "bash", "sh", {}},
        {{"sh", "shell"}, "sh", "sh", {}},
        {{"python", "py", "python3"}, "python3", "py", {}},
    };
    return table;
}

// The container's first process: a shell that sleeps until told to stop. It
// ends on SIGTERM (a PID 1 without a handler ignores it, and `docker stop`
// would wait its grace period for nothing), and, being PID 1, it reaps the
// orphans that blocks leave.
constexpr const char* keep_alive_script = "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";

// Runs a block: "$@" is the interpreter and the file. Its stderr goes into
// its stdout: the daemon copies an exec's two streams independently, so a
// traceback could otherwise arrive before the lines printed ahead of it. The
// exit code is reported on the exec's stderr, which then carries nothing
// else, so that no exec inspect is needed. Then, as local_executor does, what
// the block left in the background is killed, so that the exec's stream
// closes: the exec is its process group's leader (runc makes it one; checked,
// as a group shared with the container's PID 1 must not be killed), and the
// group goes, the wrapper with it. Process creation inside a container is
// the wrapper's whole cost, so it has one fork and one exec more than running
// the file bare, and nothing else that is not a builtin.
constexpr const char* block_script =
    "exec 3>&2 2>&1\n"
    "\"$@\" 3>&- &\n"
    "wait $!\n"
    "r=$?\n"
    "read -r s < /proc/$$/stat; set -- $s\n"
    "echo \"$r\" >&3\n"
    "[ \"$5\" = \"$$\" ] && kill -KILL 0\n"
    "exit \"$r\"\n";

// Kills every process whose environment carries KERNEX_BLOCK=$1 (the block's
// tag, inherited by all it starts, whatever group or session they moved to),
// again until none is left.
constexpr const char* kill_script =
    "t=\"KERNEX_BLOCK=$1\"\n"
    "for round in 1 2 3 4 5 6 7 8 9 10; do\n"
    "  found=\n"
    "  for d in /proc/[0-9]*; do\n"
    "    if tr '\\0' '\\n' < \"$d/environ\" 2>/dev/null | grep -qxF \"$t\"; then\n"
    "      kill -KILL \"${d#/proc/}\" 2>/dev/null && found=1\n"
    "    fi\n"
    "  done\n"
    "  [ -n \"$found\" ] || exit 0\n"
    "done\n";

// The exit code in what the block's wrapper wrote on stderr: "N\n" alone.
std::optional<int> reported_exit_code(const std::string& report) {
    if (report.size() < 2 || report.size() > 4 || report.back() != '\n') return std::nullopt;
    int code = 0;
    for (std::size_t i = 0; i + 1 < report.size(); ++i) {
        if (report[i] < '0' || report[i] > '9') return std::nullopt;
        code = code * 10 + (report[i] - '0');
    }
    return code;
}

// What one block needs to run, worked out before anything runs.
struct planned_block {
    std::string name;     // as written (directive) or content-hashed, relative to the work dir
    std::string program;  // the interpreter in the container
};

}  // namespace

docker_executor::docker_executor(docker_executor_options options)
    : m_options(std::move(options)),
      m_client(docker_client_options{.host = m_options.docker_host, .timeout = m_options.request_timeout}) {
    if (m_options.image.empty()) throw error(errc::invalid_argument, "the docker executor needs an image");
    if (m_options.timeout.count() <= 0 || m_options.request_timeout.count() <= 0)
        throw error(errc::invalid_argument, "the docker executor's timeouts must be positive");
    docker::check_limits({m_options.memory, m_options.cpus, m_options.pids_limit});
    if (m_options.network_mode.empty()) m_options.network_mode = "none";
    if (!m_options.user) m_options.user = std::to_string(::getuid()) + ":" + std::to_string(::getgid());
    if (m_options.work_dir) m_options.work_dir = fs::absolute(*m_options.work_dir);

    detail::open_cancel_pipe(m_cancel_read, m_cancel_write);
    try {
        make_work_dir();
        start_container();
    } catch (...) {
        stop();
        ::close(m_cancel_read);
        ::close(m_cancel_write);
        throw;
    }
}

docker_executor::~docker_executor() {
    stop();
    ::close(m_cancel_read);
    ::close(m_cancel_write);
}

void docker_executor::make_work_dir() {
    auto made = detail::make_work_dir(m_options.work_dir);
    m_work_dir = std::move(made.path);
    m_owns_work_dir = made.temporary;
}

void docker_executor::start_container() {
    std::error_code ec;
    const fs::path dir = fs::canonical(m_work_dir, ec);
    if (ec) throw error(errc::io_error, "the work dir " + m_work_dir.string() + " is gone: " + ec.message());
    docker::container_config config;
    config.image = m_options.image;
    config.name = m_options.container_name.value_or("kernex-" + docker::random_hex(12));
    config.cmd = {"sh", "-c", keep_alive_script};
    config.binds = {dir.string() + ":/workspace:rw"};
    config.network_mode = m_options.network_mode;
    config.limits = {m_options.memory, m_options.cpus, m_options.pids_limit};
    config.labels = {{"org.kernex.executor", "docker"}};
    config.user = *m_options.user;
    m_container_id = docker::create_container(m_client, config);
    m_container_name = config.name;
    try {
        docker::start_container(m_client, m_container_id, m_options.image,
                                "the image needs sh and sleep; a bad memory, cpus or pids_limit?");
    } catch (const error&) {
        remove_container();
        throw;
    }
}

// A container that has stopped (or gone) since the last block: start it again, or make a new one.
void docker_executor::ensure_running() {
    const docker_response r = m_client.request("POST", "/containers/" + m_container_id + "/start");
    if (r.status == 204 || r.status == 304) return;
    m_container_id.clear();
    m_container_name.clear();
    start_container();
}

void docker_executor::restart() {
    if (m_container_id.empty()) {
        if (m_work_dir.empty()) make_work_dir();
        start_container();
        return;
    }
    const docker_response r = m_client.request("POST", "/containers/" + m_container_id + "/restart?t=2");
    if (r.status == 404) {
        m_container_id.clear();
        start_container();
    } else if (r.status != 204) {
        throw error(errc::docker_error, "the Docker daemon at " + m_client.host() + " could not restart container " +
                                            m_container_name + " (" + std::to_string(r.status) + "): " + r.body);
    }
}

void docker_executor::remove_container() noexcept {
    docker::remove_container(m_client, m_container_id);
    m_container_id.clear();
    m_container_name.clear();
}

void docker_executor::stop() noexcept {
    bool left_running = false;
    if (!m_container_id.empty()) {
        if (!m_options.stop_container) {
            left_running = true;
        } else if (m_options.auto_remove) {
            remove_container();
        } else {
            try {
                m_client.request("POST", "/containers/" + m_container_id + "/stop?t=2");
            } catch (...) {
            }
        }
        m_container_id.clear();
        m_container_name.clear();
    }
    // A container left running still has the work dir bound: it stays too.
    if (m_owns_work_dir && !left_running) {
        std::error_code ec;
        fs::remove_all(m_work_dir, ec);
    }
    if (m_owns_work_dir) m_work_dir.clear();
    m_owns_work_dir = false;
}

void docker_executor::interrupt() noexcept { detail::send_cancel(m_cancel_write); }

std::vector<std::vector<std::string>> docker_executor::languages() { return detail::language_names(language_table()); }

void docker_executor::kill_block(const std::string& token) {
    const std::string id = m_client.create_exec(
        m_container_id, {.cmd = {"sh", "-c", kill_script, "kernex-kill", token}, .env = {}, .working_dir = "/",
                         .user = "0:0"});
    const auto end = m_client.start_exec(id, {.deadline = steady::now() + m_options.request_timeout, .on_output = {}, .cancel_fd = -1});
    if (end != docker_stream_end::finished)
        throw error(errc::docker_error, "killing a block's processes in container " + m_container_name +
                                            " took longer than " + detail::seconds_text(m_options.request_timeout));
}

code_result docker_executor::execute_blocks(const std::vector<code_block>& blocks, const output_handler& on_output) {
    code_result result;
    detail::block_output out(result, on_output);
    auto say = [&](const std::string& line) { out.say(line); };
    detail::drain_cancel(m_cancel_read);

    if (m_container_id.empty()) {
        if (m_work_dir.empty()) make_work_dir();
        start_container();
    }
    std::error_code ec;
    const fs::path dir = fs::canonical(m_work_dir, ec);
    if (ec) throw error(errc::io_error, "the work dir " + m_work_dir.string() + " is gone: " + ec.message());

    // Everything is checked before anything is written or run: a message
    // whose third block cannot run runs none.
    std::vector<planned_block> plan;
    for (const auto& block : blocks) {
        const auto* lang = detail::find_language(language_table(), block.language);
        if (!lang) {
            say("unknown language '" + block.language + "': the docker executor runs " +
                detail::known_languages(language_table()));
            result.exit_code = 1;
            return result;
        }
        const auto name = detail::block_file_name(dir, block.code, lang->extension);
        if (!name) {
            say("filename is not inside the work dir: " + detail::filename_directive(block.code));
            result.exit_code = 1;
            return result;
        }
        plan.push_back({*name, lang->program});
    }

    std::vector<std::string> env = {"PYTHONUNBUFFERED=1"};
    for (const auto& [name, value] : m_options.env) env.push_back(name + "=" + value);
    env.emplace_back();  // the block's tag, set per block

    std::uint64_t dropped = 0;
    std::string report;  // the block's exit code, as its wrapper says it on stderr
    auto keep = [&](docker_stream stream, std::string_view data) {
        if (stream == docker_stream::standard_input) return;
        if (stream == docker_stream::standard_error) {
            if (report.size() < 4096) report.append(data.substr(0, 4096));
            return;
        }
        const std::size_t take = std::min(out.room(m_options.max_output), data.size());
        if (take > 0) out.emit(data.substr(0, take));
        dropped += data.size() - take;
    };

    const auto deadline = steady::now() + m_options.timeout;
    for (std::size_t i = 0; i < plan.size(); ++i) {
        const auto file = detail::write_block_file(dir, plan[i].name, blocks[i].code, out);
        if (!file) {
            result.exit_code = 1;
            break;
        }
        result.code_files.push_back(*file);
        if (steady::now() >= deadline) {
            say(detail::timeout_line(m_options.timeout));
            result.exit_code = 124;
            result.timed_out = true;
            break;
        }

        // Relative, as the code's own messages will show it; "./" keeps a
        // name starting with '-' from being read as an option.
        std::string relative = file->lexically_relative(dir).string();
        if (relative.starts_with("-")) relative = "./" + relative;
        const std::string token = docker::random_hex(24);
        report.clear();
        env.back() = "KERNEX_BLOCK=" + token;
        const docker_exec_options exec{.cmd = {"sh", "-c", block_script, "kernex-block", plan[i].program, relative},
                                       .env = env,
                                       .working_dir = "/workspace",
                                       .user = *m_options.user};
        std::string exec_id;
        try {
            exec_id = m_client.create_exec(m_container_id, exec);
        } catch (const error&) {
            // Most likely the container stopped (or went) since the last
            // block: start it (or a new one) and try once more.
            ensure_running();
            exec_id = m_client.create_exec(m_container_id, exec);
        }
        docker_stream_end end;
        try {
            end = m_client.start_exec(exec_id, {.deadline = deadline, .on_output = keep, .cancel_fd = m_cancel_read});
        } catch (const error& e) {
            if (e.code() != errc::docker_error) throw;
            throw error(e.code(), std::string("the block's output was cut off: ") + e.what());
        }

        if (end == docker_stream_end::finished) {
            std::optional<int> code = reported_exit_code(report);
            const bool reported = code.has_value();
            if (!reported) {
                // No report: the wrapper did not get to it (killed with its
                // container?) or said something else, which is output too.
                if (!report.empty()) keep(docker_stream::standard_output, report);
                // The stream closes as the exec ends; the daemon may record
                // its exit code a moment later.
                const auto until = std::max(deadline, steady::now() + std::chrono::seconds(5));
                while (!(code = m_client.exec_exit_code(exec_id)) && steady::now() < until)
                    std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
            if (!code) {
                kill_block(token);
                say(detail::timeout_line(m_options.timeout));
                result.exit_code = 124;
                result.timed_out = true;
                break;
            }
            if (*code == 0) continue;
            if (!reported && (*code < 0 || *code >= 126)) {
                // Killed: by the code itself, the memory limit, or with its
                // container? The daemon may learn of the container's end
                // just after the exec's, so it is given a moment to.
                nlohmann::json state;
                for (int i = 0; i < 10; ++i) {
                    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
                    state = m_client.call("GET", "/containers/" + m_container_id + "/json")
                                .value("State", nlohmann::json::object());
                    if (!state.value("Running", false)) break;
                }
                if (!state.value("Running", false)) {
                    say("kernex: the container " + m_container_name + " stopped while the block ran (" +
                        (state.value("OOMKilled", false) ? std::string("out of memory")
                                                         : "exit code " + std::to_string(state.value("ExitCode", -1))) +
                        "); the next execute() starts it again");
                    result.exit_code = 1;
                    break;
                }
            }
            result.exit_code = *code < 0 ? 1 : *code;
            break;
        }
        kill_block(token);
        if (end == docker_stream_end::timed_out) {
            say(detail::timeout_line(m_options.timeout));
            result.exit_code = 124;
            result.timed_out = true;
        } else {
            say("Interrupted");
            result.exit_code = 130;
        }
        break;
    }
    if (dropped > 0) {
        result.truncated = true;
        say(detail::truncated_line(dropped, m_options.max_output));
    }
    return result;
}

namespace detail {

std::unique_ptr<code_executor> make_docker_executor(const nlohmann::json& config) {
    const executor_config c(config, "docker");
    docker_executor_options options;
    if (auto v = c.string("image")) options.image = *v;
    if (auto v = c.string("container_name")) options.container_name = *v;
    if (auto v = c.string("work_dir")) options.work_dir = *v;
    if (auto v = c.seconds("timeout")) options.timeout = *v;
    if (auto v = c.count("max_output")) options.max_output = *v;
    if (auto v = c.string_map("env")) options.env = std::move(*v);
    if (auto v = c.string("network_mode")) options.network_mode = *v;
    if (auto v = c.bytes("memory")) options.memory = *v;
    if (auto v = c.positive("cpus")) options.cpus = *v;
    if (auto v = c.count("pids_limit")) options.pids_limit = static_cast<std::int64_t>(*v);
    if (auto v = c.string("user")) options.user = *v;
    if (auto v = c.boolean("auto_remove")) options.auto_remove = *v;
    if (auto v = c.boolean("stop_container")) options.stop_container = *v;
    if (auto v = c.string("docker_host")) options.docker_host = *v;
    if (auto v = c.seconds("request_timeout")) options.request_timeout = *v;
    return std::make_unique<docker_executor>(std::move(options));
}

}  // namespace detail

}  // namespace kernex
