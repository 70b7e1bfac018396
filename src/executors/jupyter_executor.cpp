// jupyter_executor: code blocks in one kernel session, outputs flattened to
// text for agents, rich outputs saved as files.
#include "kernex/jupyter_executor.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "executors/code_files.hpp"
#include "executors/executor_config.hpp"
#include "kernex/connection.hpp"
#include "kernex/error.hpp"
#include "kernex/output_files.hpp"

namespace kernex {

namespace {

using steady = std::chrono::steady_clock;

// Block labels each kernel language accepts besides its own name.
struct language_aliases {
    std::string_view kernel;
    std::array<std::string_view, 4> labels;
};
constexpr std::array<language_aliases, 5> aliases{{
    {"python", {"py", "python3", "ipython", "ipython3"}},
    {"bash", {"sh", "shell", "", ""}},
    {"javascript", {"js", "node", "", ""}},
    {"r", {"", "", "", ""}},
    {"julia", {"jl", "", "", ""}},
}};

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string ensure_newline(std::string text) {
    if (!text.empty() && text.back() != '\n') text.push_back('\n');
    return text;
}

}  // namespace

bool jupyter_executor::accepts(std::string_view kernel_language, std::string_view language) {
    auto k = lower(kernel_language), l = lower(language);
    if (k == l) return true;
    for (const auto& a : aliases)
        if (a.kernel == k)
            for (auto label : a.labels)
                if (!label.empty() && label == l) return true;
    return false;
}

jupyter_executor::jupyter_executor(jupyter_executor_options options) : m_options(std::move(options)) {
    m_output_dir = m_options.output_dir ? *m_options.output_dir
                   : m_options.work_dir ? *m_options.work_dir
                                        : std::filesystem::current_path();
    json info;
    if (m_options.connection_file) {
        // What `jupyter kernel` prints (kernel-ID.json) names a file in the
        // runtime dir, as for `jupyter console --existing`.
        m_options.connection_file = find_connection_file(m_options.connection_file->string());
        m_client.emplace(kernel_client::from_connection_file(*m_options.connection_file));
        info = m_client->wait_for_ready(m_options.startup_timeout);
    } else if (m_options.kernel_id) {
        if (!m_options.gateway) throw error(errc::invalid_argument, "executor jupyter's kernel_id needs gateway_url");
        m_attached.emplace(remote_kernel::attach(*m_options.gateway, *m_options.kernel_id));
        info = m_attached->client().kernel_info(m_options.startup_timeout);
    } else {
        kernel_options ko;
        ko.kernel_name = m_options.kernel_name;
        ko.cwd = m_options.work_dir;
        ko.ready_timeout = m_options.startup_timeout;
        ko.gateway = m_options.gateway;
        ko.docker = m_options.docker;
        ko.env = m_options.env;
        ko.inherit_env = m_options.inherit_env;
        if (m_options.work_dir && !ko.gateway) std::filesystem::create_directories(*m_options.work_dir);
        m_manager.emplace(kernel_manager::start(ko));
        info = m_manager->client().kernel_info(m_options.startup_timeout);
    }
    m_language = lower(info.value("language_info", json::object()).value("name", ""));
}

jupyter_executor::~jupyter_executor() { stop(); }

kernel_client& jupyter_executor::client() {
    if (m_manager) return m_manager->client();
    if (m_client) return *m_client;
    if (m_attached) return m_attached->client();
    throw error(errc::invalid_argument, "the jupyter executor was stopped; make a new one");
}

void jupyter_executor::restart() {
    if (!m_manager)
        throw error(errc::unsupported,
                    "cannot restart a kernel kernex did not start (connected from a connection file)");
    m_manager->restart();
}

void jupyter_executor::stop() noexcept {
    if (m_manager) m_manager->shutdown();
    m_manager.reset();
    m_client.reset();
    m_attached.reset();  // attached, not owned: the kernel stays on the server
}

void jupyter_executor::interrupt() noexcept {
    m_interrupted = true;
    try {
        if (m_manager) m_manager->interrupt();
        else if (m_attached) m_attached->interrupt();
        // A kernel from a connection file: its client is busy on another
        // thread, so the request goes through a client of its own.
        else if (m_options.connection_file)
            kernel_client::from_connection_file(*m_options.connection_file, {.heartbeat_period = {}})
                .interrupt_request(std::chrono::seconds(2));
    } catch (...) {
        // Nothing to interrupt (the kernel is gone): the result says so.
    }
}

code_result jupyter_executor::execute_blocks(const std::vector<code_block>& blocks, const output_handler& on_output) {
    code_result result;
    detail::block_output out(result, on_output, {m_options.max_output, m_options.max_output_head});
    if (m_options.save_full_output) {
        std::filesystem::create_directories(m_output_dir);
        out.save_full_output(m_output_dir);
    }
    auto deadline = steady::now() + m_options.timeout;
    m_interrupted = false;
    auto& kc = client();
    // Every block is checked before any runs, as the file executors do: a
    // message whose last block cannot run here runs none (half a message
    // run leaves the kernel's state half changed).
    for (const auto& block : blocks)
        if (!accepts(m_language, block.language)) {
            result.exit_code = 1;
            out.say("kernex: a " + block.language + " block cannot run on this " + m_language +
                    " kernel; label it " + m_language + " or use an executor for " + block.language +
                    "; no block was run");
            out.finish();
            return result;
        }
    const auto say = [&](const std::string& line) { out.say(line); };
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        const code_block& block = blocks[i];
        if (const auto a = approve_block(blocks, i, result, deadline, say); a != approval::run) {
            if (a == approval::skip) continue;
            break;
        }
        ++result.blocks;
        const auto limit = detail::limit_for_block(deadline, m_options.timeout, m_options.block_timeout);
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(limit.deadline - steady::now());
        int saved = 0;  // rich outputs of this block
        execute_options eo;
        eo.timeout = std::max(left, std::chrono::milliseconds(1));
        eo.allow_stdin = false;  // an agent's code cannot be answered interactively
        eo.max_output_bytes = 0;  // on_output below takes every output, within max_output
        eo.on_output = [&](const output& o) {
            if (auto* s = std::get_if<outputs::stream>(&o)) {
                out.emit(s->text);
                return;
            }
            const json* data = nullptr;
            if (auto* d = std::get_if<outputs::display_data>(&o)) data = &d->data;
            if (auto* r = std::get_if<outputs::execute_result>(&o)) data = &r->data;
            if (auto* u = std::get_if<outputs::update_display_data>(&o)) data = &u->data;
            if (data && has_file_output(*data)) {
                const std::string stem =
                    m_options.output_stem + "-block" + std::to_string(i + 1) + "-" + std::to_string(++saved);
                for (auto& p : save_output_files(*data, m_output_dir, stem)) {
                    out.say(saved_output_line(p));
                    result.output_files.push_back(std::move(p));
                }
            } else if (auto text = data ? text_form(*data) : std::nullopt) {
                out.emit(ensure_newline(*text));  // as kernex run shows it
            } else if (auto* e = std::get_if<outputs::error>(&o)) {
                std::string text;
                for (const auto& line : e->traceback) text += strip_ansi(line) + "\n";
                if (e->traceback.empty()) text = e->ename + ": " + e->evalue + "\n";
                out.emit(text);
            }
        };
        const std::uint64_t oversized_before = kc.rejected()[reject_reason::oversized];
        auto r = kc.execute(block.code, eo);
        // Output the kernel sent that never reached us (a message over the
        // size limit, iopub lost before its idle status) is said, never
        // dropped silently.
        if (const auto lost = kc.rejected()[reject_reason::oversized] - oversized_before; lost > 0) {
            result.truncated = true;
            out.say("kernex: " + std::to_string(lost) + " output message(s) above the message size limit were dropped");
        }
        // iopub lost a message (its idle status never came): outputs may be missing.
        if (r.outputs_lost) result.truncated = true;
        // A restart() the caller asked for is not reported as lost state:
        // kernel_manager takes the new kernel as the baseline.
        if (r.status == execution_status::ok) {
            if (!r.note.empty()) out.say("kernex: " + r.note);
            continue;
        }
        if (r.status == execution_status::timeout) {
            result.exit_code = 124;
            result.timed_out = true;
            // The words of the file executors and of kernex run.
            out.say(detail::timeout_line(limit.limit) +
                    (r.restarted ? std::string(" (the kernel was restarted: its state is lost)") : ""));
        } else if (m_interrupted) {
            result.exit_code = 130;
            out.say("Interrupted");
        } else if (r.status == execution_status::kernel_died) {
            result.exit_code = 1;
            out.say("kernex: " + (r.note.empty() ? std::string("the kernel died while running the block") : r.note));
        } else {
            result.exit_code = 1;
        }
        break;
    }
    out.finish();
    return result;
}

namespace detail {

namespace {

// Options that mean nothing without `needed` (gateway_token without gateway_url).
void needs(const nlohmann::json& config, std::initializer_list<const char*> keys, const char* needed) {
    if (config.contains(needed)) return;
    for (const char* key : keys)
        if (config.contains(key))
            throw error(errc::invalid_argument,
                        std::string("option '") + key + "' of executor jupyter needs " + needed);
}

}  // namespace

std::unique_ptr<code_executor> make_jupyter_executor(const nlohmann::json& config) {
    executor_config c(config, "jupyter");
    jupyter_executor_options o;
    if (auto v = c.string("kernel_name")) o.kernel_name = *v;
    if (auto v = c.string("connection_file")) o.connection_file = *v;
    if (auto v = c.string("kernel_id")) o.kernel_id = *v;
    needs(config, {"kernel_id"}, "gateway_url");
    if (auto v = c.string("work_dir")) o.work_dir = *v;
    if (auto v = c.string("output_dir")) o.output_dir = *v;
    if (auto v = c.string("output_stem")) o.output_stem = *v;
    if (auto v = c.seconds("timeout")) o.timeout = *v;
    if (auto v = c.seconds("block_timeout")) o.block_timeout = *v;
    if (auto v = c.count("max_output")) o.max_output = static_cast<std::size_t>(*v);
    if (auto v = c.count("max_output_head")) o.max_output_head = static_cast<std::size_t>(*v);
    if (auto v = c.boolean("save_full_output")) o.save_full_output = *v;
    detail::output_cap{o.max_output, o.max_output_head}.check("jupyter");
    if (auto v = c.seconds("startup_timeout")) o.startup_timeout = *v;
    if (auto v = c.environment("env")) o.env = std::move(*v);
    if (auto v = c.boolean("inherit_env")) o.inherit_env = *v;
    if ((config.contains("env") || config.contains("inherit_env")) && (o.connection_file || o.kernel_id))
        throw error(errc::invalid_argument, "options 'env' and 'inherit_env' of executor jupyter are for a kernel kernex "
                                            "starts, not one it connects to (connection_file, kernel_id)");
    if (auto v = c.string("gateway_url")) {
        o.gateway.emplace();
        o.gateway->url = *v;
    }
    needs(config, {"gateway_token", "gateway_ca", "gateway_headers"}, "gateway_url");
    if (o.gateway) {
        if (auto v = c.string("gateway_token")) o.gateway->token = *v;
        if (auto v = c.string("gateway_ca")) o.gateway->ca_file = *v;
        if (auto v = c.string_map("gateway_headers")) o.gateway->headers = *v;
        if (o.connection_file)
            throw error(errc::invalid_argument, "executor jupyter takes connection_file or gateway_url, not both");
    }
    if (auto v = c.string("docker_image")) {
        o.docker.emplace();
        o.docker->image = *v;
    }
    // The container's options, by the docker executor's names (what `kernex
    // exec`'s flags set) or with docker_ in front; 0 for a limit: none.
    needs(config, {"docker_network", "docker_memory", "docker_cpus", "docker_pids_limit", "docker_host", "tls_verify",
                   "tls_ca", "tls_cert", "tls_key", "network_mode", "memory", "cpus", "pids_limit", "user", "read_only"},
          "docker_image");
    if (o.docker) {
        auto zero = [&](const char* key) {
            const auto it = config.find(key);
            return it != config.end() && ((it->is_number() && *it == 0) || (it->is_string() && *it == "0"));
        };
        for (const char* key : {"network_mode", "docker_network"})
            if (auto v = c.string(key)) o.docker->network_mode = *v;
        for (const char* key : {"memory", "docker_memory"})
            if (zero(key)) o.docker->memory.reset();
            else if (auto v = c.bytes(key)) o.docker->memory = *v;
        for (const char* key : {"cpus", "docker_cpus"})
            if (auto v = c.positive(key)) o.docker->cpus = *v;
        for (const char* key : {"pids_limit", "docker_pids_limit"})
            if (zero(key)) o.docker->pids_limit.reset();
            else if (auto v = c.count(key)) o.docker->pids_limit = static_cast<std::int64_t>(*v);
        if (auto v = c.string("user")) o.docker->user = *v;
        if (auto v = c.boolean("read_only")) o.docker->read_only = *v;
        if (auto v = c.string("docker_host")) o.docker->docker_host = *v;
        read_docker_tls(c, o.docker->tls);
        if (o.connection_file || o.gateway)
            throw error(errc::invalid_argument,
                        "executor jupyter takes one of connection_file, gateway_url and docker_image");
    }
    return std::make_unique<jupyter_executor>(std::move(o));
}

}  // namespace detail

}  // namespace kernex
