#include "mcp/engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "kernex/error.hpp"
#include "kernex/executor.hpp"
#include "kernex/kernelspec.hpp"
#include "kernex/local_executor.hpp"
#include "kernex/output_files.hpp"

namespace kernex::mcp {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;

struct engine::session {
    std::string id;
    std::string owner;
    std::string kernel;
    std::string language;   // the kernelspec's language (its name when it says none)
    std::string kernel_id;  // in m_kernels
    std::shared_ptr<kernel_manager> km;
    std::mutex run;                 // held for a call's whole run: calls on a session are serialised
    std::atomic<int> users{0};      // calls running or waiting for run
    steady::time_point last_used = steady::now();  // guarded by engine::m_mutex
    int restarts_seen = 0;          // km->restart_count() when the last call ended
    bool closed = false;            // guarded by run
};

void call_context::on_cancel(std::function<void()> interrupt) {
    std::unique_lock lock(m_mutex);
    m_interrupt = std::move(interrupt);
    if (m_interrupt && m_cancelled.load()) {
        auto run = m_interrupt;
        lock.unlock();
        run();
    }
}

void call_context::cancel() {
    std::function<void()> run;
    {
        std::lock_guard lock(m_mutex);
        m_cancelled = true;
        run = m_interrupt;
    }
    if (run) run();
}

namespace {

// A problem with a tool's arguments: the call's result says it (isError), so
// the model can correct itself.
struct argument_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

json tool_error(const std::string& text) {
    return {{"content", json::array({{{"type", "text"}, {"text", text}}})}, {"isError", true}};
}

void check_keys(const json& args, std::initializer_list<std::string_view> allowed) {
    for (const auto& [key, value] : args.items())
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
            std::string names;
            for (auto a : allowed) names.append(names.empty() ? "" : ", ").append(a);
            throw argument_error("unknown argument '" + key + "'; this tool takes: " +
                                 (names.empty() ? std::string("none") : names));
        }
}

std::optional<std::string> string_arg(const json& args, const std::string& key, bool required) {
    const auto it = args.find(key);
    if (it == args.end() || (it->is_null() && !required)) {
        if (required) throw argument_error("argument '" + key + "' (a string) is required");
        return std::nullopt;
    }
    if (!it->is_string()) throw argument_error("argument '" + key + "' must be a string, not " + it->type_name());
    return it->get<std::string>();
}

std::string seconds_text(std::chrono::milliseconds ms) {
    if (ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000) + " s";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g s", static_cast<double>(ms.count()) / 1000);
    return buf;
}

// A positive number of seconds, at most limit; nullopt when absent.
std::optional<std::chrono::milliseconds> timeout_arg(const json& args, std::chrono::milliseconds limit) {
    const auto it = args.find("timeout");
    if (it == args.end() || it->is_null()) return std::nullopt;
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() <= 0)
        throw argument_error("argument 'timeout' must be a positive number of seconds");
    const double seconds = it->get<double>();
    if (seconds * 1000 > static_cast<double>(limit.count()))
        throw argument_error("timeout " + json(seconds).dump() + " s is above this server's limit of " +
                             seconds_text(limit));
    return std::chrono::milliseconds(std::max<std::int64_t>(1, std::llround(seconds * 1000)));
}

std::string random_id() {
    std::random_device rd;
    static constexpr char hex[] = "0123456789abcdef";
    std::string id;
    for (int i = 0; i < 8; ++i) id += hex[rd() % 16];
    return id;
}

std::string mime_text(const json& value) {
    if (value.is_string()) return value.get<std::string>();
    if (value.is_array()) {  // nbformat's list of lines
        std::string out;
        for (const auto& line : value)
            if (line.is_string()) out += line.get<std::string>();
        return out;
    }
    return value.dump();
}

// Builds a CallToolResult's content from a cell's outputs: text joined in
// order, images as image content where they appear.
class content_builder {
public:
    void text(std::string_view t) { m_text.append(t); }
    void data(const json& bundle) {
        if (!bundle.is_object()) return;
        bool image = false;
        for (const char* mime : {"image/png", "image/jpeg"}) {
            const auto it = bundle.find(mime);
            if (it == bundle.end()) continue;
            std::string b64 = mime_text(*it);
            std::erase_if(b64, [](char c) { return c == '\n' || c == '\r' || c == ' '; });
            add_image(std::move(b64), mime);
            image = true;
            break;
        }
        if (!image) {
            const auto svg = bundle.find("image/svg+xml");
            if (svg != bundle.end()) {
                add_image(base64_encode(mime_text(*svg)), "image/svg+xml");
                image = true;
            }
        }
        for (const char* mime : {"text/markdown", "text/plain", "text/html"}) {
            const auto it = bundle.find(mime);
            if (it == bundle.end()) continue;
            // An image's text/plain is "<Figure size 640x480 with 1 Axes>": noise.
            if (image && std::string_view(mime) == "text/plain") break;
            std::string t = mime_text(*it);
            m_text += t;
            if (!t.empty() && t.back() != '\n') m_text += '\n';
            break;
        }
    }
    json finish() {
        flush();
        if (m_content.empty()) m_content.push_back({{"type", "text"}, {"text", ""}});
        return std::move(m_content);
    }

private:
    void add_image(std::string b64, const char* mime) {
        flush();
        m_content.push_back({{"type", "image"}, {"data", std::move(b64)}, {"mimeType", mime}});
    }
    void flush() {
        if (m_text.empty()) return;
        m_content.push_back({{"type", "text"}, {"text", std::move(m_text)}});
        m_text.clear();
    }
    json m_content = json::array();
    std::string m_text;
};

json object_schema(json properties, json required) {
    return {{"type", "object"},
            {"properties", std::move(properties)},
            {"required", std::move(required)},
            {"additionalProperties", false}};
}

const json& timeout_schema() {
    static const json s = {{"type", "number"},
                           {"exclusiveMinimum", 0},
                           {"description", "Seconds this call may run (default and most: the server's limit)"}};
    return s;
}

const json session_schema = {{"type", "string"}, {"description", "A session id from start_session"}};



// --confirm: asks the user, through the client (elicitation/create, form
// mode), whether the block may run. Returns run only for an accepted form
// with "run": true; otherwise stop, with the reason in why.
approval ask_user(call_context& ctx, const block_review& r, const std::string& where, std::chrono::milliseconds wait,
                  std::string& why) {
    if (!ctx.ask) {
        why = "this client cannot be asked (no elicitation), so nothing runs";
        return approval::stop;
    }
    std::string message = "kernex asks: run this " + std::string(r.language) + " code " + where + "?\n";
    message += "SHA-256 " + r.sha256 + ", " + std::to_string(r.code.size()) + " bytes.\n";
    if (const auto n = r.hidden_characters; n > 0)
        message += "WARNING: the code holds " + std::to_string(n) +
                   " control or bidirectional character(s) that a screen may not show as they are: what you see "
                   "may not be what runs.\n";
    message += "\n";
    message.append(r.code);
    const json params = {
        {"message", message},
        {"requestedSchema",
         {{"type", "object"},
          {"properties",
           {{"run",
             {{"type", "boolean"},
              {"title", "Run this code"},
              {"description", "true runs the code shown, exactly; false or declining runs nothing"}}}}},
          {"required", {"run"}}}}};
    std::string failed;
    const auto answer = ctx.ask("elicitation/create", params, wait, &failed);
    if (!answer) {
        why = "not run: the user was asked and " + failed;
        return approval::stop;
    }
    const std::string action = answer->is_object() ? answer->value("action", std::string()) : std::string();
    if (action == "accept") {
        const auto content = answer->find("content");
        if (content != answer->end() && content->is_object() && content->value("run", json()) == json(true))
            return approval::run;
        why = "not run: the user did not approve it (accepted the form with run: false)";
    } else if (action == "decline" || action == "cancel") {
        why = "not run: the user " + std::string(action == "decline" ? "declined" : "cancelled") +
              " the request to run this code";
    } else {
        why = "not run: the client's answer to the approval request was not understood";
    }
    return approval::stop;
}

}  // namespace

engine::engine(server_options options) : m_options(std::move(options)) {
    if (!m_options.executor_config.is_object()) m_options.executor_config = json::object();
    m_executor_name = m_options.executor_config.value("executor", "local");
    m_options.executor_config["executor"] = m_executor_name;
    if (!m_options.executor_config.contains("timeout"))
        m_options.executor_config["timeout"] = static_cast<double>(m_options.timeout.count()) / 1000;
    // Checks the config now (an unknown option, a bad value) rather than at the first call.
    make_executor(m_options.executor_config)->stop();
    m_reaper = std::jthread([this](std::stop_token stop) { reap_idle(stop); });
}

engine::~engine() { shutdown(); }

json engine::list_tools() const {
    const json& config = m_options.executor_config;
    const auto code_limit = std::chrono::milliseconds(
        static_cast<std::int64_t>(config.value("timeout", 60.0) * 1000));
    std::string languages;
    if (m_executor_name == "local") {
        for (const auto& names : local_executor::languages()) languages.append(languages.empty() ? "" : ", ").append(names[0]);
    } else {
        languages = "python, bash, sh (what the image " + config.value("image", std::string("python:3-slim")) + " has)";
    }
    const std::string where =
        m_executor_name == "docker"
            ? "in a new Docker container (image " + config.value("image", std::string("python:3-slim")) +
                  ", network " + config.value("network_mode", std::string("none")) + ")"
            : "in a new local process";
    const std::string work_dir = config.contains("work_dir") && config["work_dir"].is_string()
                                     ? "the work dir " + config["work_dir"].get<std::string>() + " (files persist there)"
                                     : "a fresh temporary work dir, removed after the call";
    const std::string run_code_text =
        "Run one block of code " + where + ", in " + work_dir +
        ". Stateless: variables do not survive the call (use run_cell for that). Languages: " + languages +
        ". Time limit " + seconds_text(code_limit) + " (the 'timeout' argument may lower it); output beyond " +
        std::to_string(config.value("max_output", std::uint64_t{1} << 20)) +
        " bytes is dropped with a notice. A non-zero exit code is an error result.";
    std::string kernel_where = m_options.gateway   ? "on the Jupyter Server " + m_options.gateway->url
                               : m_options.docker_image ? "in a Docker container of " + *m_options.docker_image
                                                        : "locally";
    const std::string run_cell_text =
        "Run code in a stateful Jupyter kernel session (" + m_options.kernel_name + " by default, " + kernel_where +
        "): variables, imports and definitions persist across calls on the same session until it is restarted or "
        "closed. Without 'session', a default session is started on first use. Images come back as images; errors "
        "with their traceback. Time limit " + seconds_text(m_options.timeout) + ", output beyond " +
        std::to_string(m_options.max_output) + " bytes dropped. At most " + std::to_string(m_options.max_sessions) +
        " sessions; idle ones are closed after " + seconds_text(m_options.session_idle) + ".";

    // The model should know a refusal is a person's decision, not a failure to retry.
    const std::string asked = m_options.confirm ? " Each run is first shown to the user, who may refuse it: then "
                                                  "nothing ran; do not retry the same code unasked."
                                                : "";
    const json annotations_run = {{"readOnlyHint", false},
                                  {"destructiveHint", true},
                                  {"idempotentHint", false},
                                  {"openWorldHint", m_executor_name != "docker"}};
    json tools = json::array();
    tools.push_back(
        {{"name", "run_code"},
         {"title", "Run code"},
         {"description", run_code_text + asked},
         {"inputSchema",
          object_schema({{"code", {{"type", "string"}, {"description", "The code to run"}}},
                         {"language", {{"type", "string"}, {"description", "Its language: " + languages}}},
                         {"timeout", timeout_schema()}},
                        {"code", "language"})},
         {"outputSchema",
          object_schema({{"exit_code", {{"type", "integer"}, {"description", "0 ok, 124 timeout, 130 interrupted"}}},
                         {"timed_out", {{"type", "boolean"}}},
                         {"truncated", {{"type", "boolean"}, {"description", "Output was dropped past the cap"}}},
                         {"files", {{"type", "array"}, {"items", {{"type", "string"}}}}}},
                        {"exit_code", "timed_out", "truncated", "files"})},
         {"annotations", annotations_run}});
    tools.push_back(
        {{"name", "run_cell"},
         {"title", "Run a cell in a kernel session"},
         {"description", run_cell_text + asked},
         {"inputSchema", object_schema({{"code", {{"type", "string"}, {"description", "The code to run"}}},
                                        {"session", session_schema},
                                        {"timeout", timeout_schema()}},
                                       {"code"})},
         {"outputSchema",
          object_schema({{"status",
                          {{"type", "string"},
                           {"enum", {"ok", "error", "aborted", "timeout", "kernel_died", "refused"}}}},
                         {"session", {{"type", "string"}}},
                         {"execution_count", {{"type", "integer"}}},
                         {"state_lost", {{"type", "boolean"}, {"description", "The kernel restarted: earlier state is gone"}}},
                         {"truncated", {{"type", "boolean"}}}},
                        {"status", "session", "execution_count", "state_lost", "truncated"})},
         {"annotations", annotations_run}});
    tools.push_back({{"name", "start_session"},
                     {"title", "Start a kernel session"},
                     {"description", "Start a new stateful kernel session and return its id (for run_cell). kernel: a "
                                     "kernelspec name from list_kernels (default " + m_options.kernel_name + ")."},
                     {"inputSchema", object_schema({{"kernel", {{"type", "string"}, {"description", "Kernelspec name"}}}},
                                                   json::array())},
                     {"outputSchema", object_schema({{"session", {{"type", "string"}}}, {"kernel", {{"type", "string"}}}},
                                                    {"session", "kernel"})},
                     {"annotations", {{"readOnlyHint", false}, {"destructiveHint", false}, {"idempotentHint", false},
                                      {"openWorldHint", false}}}});
    tools.push_back(
        {{"name", "list_sessions"},
         {"title", "List kernel sessions"},
         {"description", "The kernel sessions this client has open, with their kernel and idle time."},
         {"inputSchema", object_schema(json::object(), json::array())},
         {"outputSchema",
          object_schema({{"sessions",
                          {{"type", "array"},
                           {"items", object_schema({{"session", {{"type", "string"}}},
                                                    {"kernel", {{"type", "string"}}},
                                                    {"busy", {{"type", "boolean"}}},
                                                    {"idle_seconds", {{"type", "number"}}}},
                                                   {"session", "kernel", "busy", "idle_seconds"})}}}},
                        {"sessions"})},
         {"annotations", {{"readOnlyHint", true}, {"idempotentHint", true}, {"openWorldHint", false}}}});
    tools.push_back({{"name", "restart_session"},
                     {"title", "Restart a kernel session"},
                     {"description", "Restart a session's kernel: all its state is lost."},
                     {"inputSchema", object_schema({{"session", session_schema}}, {"session"})},
                     {"annotations", {{"readOnlyHint", false}, {"destructiveHint", true}, {"idempotentHint", false},
                                      {"openWorldHint", false}}}});
    tools.push_back({{"name", "close_session"},
                     {"title", "Close a kernel session"},
                     {"description", "Shut a session's kernel down and forget the session."},
                     {"inputSchema", object_schema({{"session", session_schema}}, {"session"})},
                     {"annotations", {{"readOnlyHint", false}, {"destructiveHint", true}, {"idempotentHint", true},
                                      {"openWorldHint", false}}}});
    tools.push_back(
        {{"name", "list_kernels"},
         {"title", "List kernels"},
         {"description", std::string("The kernelspecs sessions can start") +
                             (m_options.gateway ? " (the Jupyter Server's)" : "") + ", and the default."},
         {"inputSchema", object_schema(json::object(), json::array())},
         {"outputSchema",
          object_schema({{"default", {{"type", "string"}}},
                         {"kernels",
                          {{"type", "array"},
                           {"items", object_schema({{"name", {{"type", "string"}}},
                                                    {"display_name", {{"type", "string"}}},
                                                    {"language", {{"type", "string"}}}},
                                                   {"name", "display_name", "language"})}}}},
                        {"default", "kernels"})},
         {"annotations", {{"readOnlyHint", true}, {"idempotentHint", true}, {"openWorldHint", false}}}});
    return {{"tools", std::move(tools)}};
}

json engine::call_tool(const std::string& owner, const std::string& name, const json& arguments, call_context& ctx) {
    static const std::vector<std::string> names = {"run_code",        "run_cell",      "start_session", "list_sessions",
                                                   "restart_session", "close_session", "list_kernels"};
    if (std::find(names.begin(), names.end(), name) == names.end()) {
        std::string valid;
        for (const auto& n : names) valid.append(valid.empty() ? "" : ", ").append(n);
        throw rpc_failure(rpc_code::invalid_params, "unknown tool '" + name + "'; the tools are: " + valid);
    }
    // However the call ends, the calls queued behind it on its session go on.
    struct give_up_turn {
        call_context& ctx;
        ~give_up_turn() { ctx.turn.reset(); }
    } give_up{ctx};
    if (!arguments.is_object()) return tool_error("arguments must be an object");
    try {
        {
            std::lock_guard lock(m_mutex);
            if (m_stopped) return tool_error("the server is shutting down");
        }
        if (name == "run_code") return run_code(arguments, ctx);
        if (name == "run_cell") return run_cell(owner, arguments, ctx);
        if (name == "start_session") return start_session(owner, arguments);
        if (name == "list_sessions") {
            check_keys(arguments, {});
            return list_sessions(owner);
        }
        if (name == "restart_session") return restart_session(owner, arguments, ctx);
        if (name == "close_session") return close_session(owner, arguments);
        check_keys(arguments, {});
        return list_kernels();
    } catch (const argument_error& e) {
        return tool_error(e.what());
    } catch (const kernex::error& e) {
        return tool_error(e.what());
    }
}

json engine::run_code(const json& args, call_context& ctx) {
    check_keys(args, {"code", "language", "timeout"});
    const std::string code = *string_arg(args, "code", true);
    const std::string language = *string_arg(args, "language", true);
    json config = m_options.executor_config;
    const auto limit = std::chrono::milliseconds(static_cast<std::int64_t>(config.value("timeout", 60.0) * 1000));
    if (const auto t = timeout_arg(args, limit)) config["timeout"] = static_cast<double>(t->count()) / 1000;
    if (m_executor_name == "local") {
        bool known = false;
        std::string all;
        for (const auto& aliases : local_executor::languages()) {
            all.append(all.empty() ? "" : ", ").append(aliases[0]);
            known = known || std::find(aliases.begin(), aliases.end(), language) != aliases.end();
        }
        if (!known) throw argument_error("unknown language '" + language + "'; this server runs: " + all);
    }
    std::unique_ptr<code_executor> executor = make_executor(config);
    std::string refused;
    if (m_options.confirm)
        executor->set_approve([&](const block_review& r) {
            return ask_user(ctx, r, "(run_code: " + m_executor_name + " executor)", m_options.confirm_wait, refused);
        });
    output_handler stream;
    if (ctx.progress) stream = [&ctx](std::string_view text) { ctx.progress(text); };
    code_result r;
    try {
        ctx.on_cancel([&executor] { executor->interrupt(); });
        r = executor->execute({code_block{language, code}}, stream);
        ctx.on_cancel(nullptr);
    } catch (...) {
        ctx.on_cancel(nullptr);
        executor->stop();
        throw;
    }
    executor->stop();
    json files = json::array();
    for (const auto& f : r.output_files) files.push_back(f.string());
    std::string text = r.output;
    if (!refused.empty()) {
        if (!text.empty() && text.back() != '\n') text += '\n';
        text += "kernex: " + refused + "\n";
    }
    if (r.exit_code != 0 && !r.timed_out) {
        if (!text.empty() && text.back() != '\n') text += '\n';
        text += "[exit code " + std::to_string(r.exit_code) + "]";
    }
    return {{"content", json::array({{{"type", "text"}, {"text", text}}})},
            {"structuredContent",
             {{"exit_code", r.exit_code}, {"timed_out", r.timed_out}, {"truncated", r.truncated}, {"files", files}}},
            {"isError", r.exit_code != 0}};
}

std::shared_ptr<engine::session> engine::new_session(const std::string& owner, const std::string& id,
                                                     const std::string& kernel) {
    {
        std::lock_guard lock(m_mutex);
        if (m_stopped) throw argument_error("the server is shutting down");
        if (static_cast<int>(m_sessions.size()) + m_starting >= m_options.max_sessions)
            throw argument_error("too many sessions: at most " + std::to_string(m_options.max_sessions) +
                                 " (--max-sessions); close one with close_session");
        ++m_starting;
    }
    auto s = std::make_shared<session>();
    s->id = id;
    s->owner = owner;
    s->kernel = kernel;
    try {
        kernel_options ko;
        ko.kernel_name = kernel;
        ko.ready_timeout = m_options.startup_timeout;
        // A client that leaves gives the server a couple of seconds to end
        // (the SDK's stdio client: 2 s, then SIGTERM, 2 s, then SIGKILL):
        // kernels are asked, then terminated, within that.
        ko.shutdown_wait = std::chrono::milliseconds(1000);
        ko.terminate_wait = std::chrono::milliseconds(700);
        if (m_options.work_dir) ko.cwd = *m_options.work_dir;
        if (m_options.gateway) ko.gateway = *m_options.gateway;
        if (m_options.docker_image) {
            docker_kernel_options d;
            d.image = *m_options.docker_image;
            ko.docker = d;
        }
        s->kernel_id = m_kernels.start(std::move(ko));
        s->km = m_kernels.get(s->kernel_id);
        s->language = s->km->spec().language.empty() ? kernel : s->km->spec().language;
    } catch (...) {
        std::lock_guard lock(m_mutex);
        --m_starting;
        throw;
    }
    std::unique_lock lock(m_mutex);
    --m_starting;
    if (m_stopped) {
        lock.unlock();
        end_session(s);
        throw argument_error("the server is shutting down");
    }
    m_sessions[owner + '\n' + id] = s;
    return s;
}

std::shared_ptr<engine::session> engine::find_session(const std::string& owner, const std::string& id) {
    std::lock_guard lock(m_mutex);
    const auto it = m_sessions.find(owner + '\n' + id);
    if (it == m_sessions.end())
        throw argument_error("unknown session '" + id + "'; list_sessions shows yours, start_session makes one");
    return it->second;
}

std::shared_ptr<engine::session> engine::default_session(const std::string& owner) {
    std::lock_guard start(m_default_mutex);
    {
        std::lock_guard lock(m_mutex);
        const auto it = m_sessions.find(owner + "\ndefault");
        if (it != m_sessions.end()) return it->second;
    }
    return new_session(owner, "default", m_options.kernel_name);
}

void engine::end_session(const std::shared_ptr<session>& s) noexcept { end_sessions({s}); }

void engine::end_sessions(const std::vector<std::shared_ptr<session>>& sessions) noexcept {
    for (const auto& s : sessions) try {
            if (s->km) s->km->interrupt();
        } catch (...) {
        }
    for (const auto& s : sessions) {
        std::lock_guard run(s->run);  // the running call, interrupted, ends first
        s->closed = true;
    }
    // In parallel: each kernel may take its shutdown_wait.
    std::vector<std::jthread> stopping;
    for (const auto& s : sessions) {
        auto stop = [this, s]() noexcept {
            try {
                m_kernels.shutdown(s->kernel_id);
            } catch (...) {
            }
            s->km.reset();
        };
        try {
            stopping.emplace_back(stop);
        } catch (...) {
            stop();
        }
    }
}

struct session_turn {
    session_turn(engine& e, std::string key) : m_engine(e), m_key(std::move(key)) {
        std::lock_guard lock(e.m_mutex);
        m_number = e.m_next_turn++;
        e.m_turns[m_key].push_back(m_number);
    }
    ~session_turn() {
        {
            std::lock_guard lock(m_engine.m_mutex);
            auto it = m_engine.m_turns.find(m_key);
            if (it != m_engine.m_turns.end()) {
                std::erase(it->second, m_number);
                if (it->second.empty()) m_engine.m_turns.erase(it);
            }
        }
        m_engine.m_turn_changed.notify_all();
    }
    session_turn(const session_turn&) = delete;
    session_turn& operator=(const session_turn&) = delete;

    // Until every call on the session that arrived before this one has ended.
    void wait() {
        std::unique_lock lock(m_engine.m_mutex);
        m_engine.m_turn_changed.wait(lock, [this] {
            const auto it = m_engine.m_turns.find(m_key);
            return it == m_engine.m_turns.end() || it->second.front() == m_number;
        });
    }

    engine& m_engine;
    std::string m_key;
    std::uint64_t m_number = 0;
};

std::shared_ptr<session_turn> engine::take_turn(const std::string& owner, const std::string& name,
                                                const json& arguments) {
    if (name != "run_cell" && name != "restart_session") return nullptr;
    std::string id = "default";
    if (arguments.is_object()) {
        const auto it = arguments.find("session");
        if (it != arguments.end() && it->is_string()) id = it->get<std::string>();
    }
    return std::make_shared<session_turn>(*this, owner + '\n' + id);
}

// A call's hold on a session: counted as a user (not idle) from before it
// waits for the session until it ends, and the session's only runner
// meanwhile. The calls that arrived first run first.
struct engine::session_use {
    session_use(engine& e, session& s, call_context& ctx) : m_engine(e), m_session(s), m_ctx(ctx) {
        ++s.users;
        if (ctx.turn) ctx.turn->wait();
        m_run = std::unique_lock(s.run);
    }
    ~session_use() {
        m_run.unlock();
        m_ctx.turn.reset();  // the next call on the session may start
        std::lock_guard lock(m_engine.m_mutex);
        m_session.last_used = steady::now();
        --m_session.users;
    }
    engine& m_engine;
    session& m_session;
    call_context& m_ctx;
    std::unique_lock<std::mutex> m_run;
};

json engine::run_cell(const std::string& owner, const json& args, call_context& ctx) {
    check_keys(args, {"code", "session", "timeout"});
    const std::string code = *string_arg(args, "code", true);
    const auto id = string_arg(args, "session", false);
    const auto timeout = timeout_arg(args, m_options.timeout).value_or(m_options.timeout);
    auto s = id && *id != "default" ? find_session(owner, *id) : default_session(owner);

    session_use use(*this, *s, ctx);
    if (s->closed) throw argument_error("session '" + s->id + "' was closed");
    if (ctx.cancelled()) return tool_error("cancelled before it ran");
    if (m_options.confirm) {
        // Asked with the session's turn held: what the user approves runs
        // next on the state they expect.
        std::string refused;
        const code_block block{s->language, code};
        if (ask_user(ctx, review_block(block), "in session " + s->id + " (a " + s->kernel + " kernel; state persists)",
                     m_options.confirm_wait, refused) != approval::run)
            return {{"content", json::array({{{"type", "text"}, {"text", "kernex: " + refused + "\n"}}})},
                    {"structuredContent",
                     {{"status", "refused"},
                      {"session", s->id},
                      {"execution_count", 0},
                      {"state_lost", false},
                      {"truncated", false}}},
                    {"isError", true}};
    }

    execute_options o;
    o.timeout = timeout;
    o.allow_stdin = false;
    o.max_output_bytes = m_options.max_output;
    if (ctx.progress)
        o.on_output = [&ctx](const output& out) {
            if (const auto* st = std::get_if<outputs::stream>(&out)) ctx.progress(st->text);
            else if (const auto* er = std::get_if<outputs::error>(&out)) ctx.progress(er->ename + ": " + er->evalue + "\n");
            else if (const auto* r = std::get_if<outputs::execute_result>(&out)) {
                if (r->data.contains("text/plain")) ctx.progress(mime_text(r->data["text/plain"]) + "\n");
            } else if (const auto* d = std::get_if<outputs::display_data>(&out)) {
                for (const auto& [mime, value] : d->data.items())
                    if (mime.starts_with("image/")) {
                        ctx.progress("[" + mime + "]\n");
                        break;
                    }
            }
        };
    auto km = s->km;
    const int restarts_before = km->restart_count();
    const bool lost_before = restarts_before != s->restarts_seen;
    ctx.on_cancel([km] {
        try {
            km->interrupt();
        } catch (...) {
        }
    });
    execution e;
    try {
        e = km->client().execute(code, o);
    } catch (...) {
        ctx.on_cancel(nullptr);
        throw;
    }
    ctx.on_cancel(nullptr);
    s->restarts_seen = km->restart_count();

    content_builder content;
    if (lost_before)
        content.text("[kernex: the kernel restarted since the last call (it had died): earlier state is lost]\n");
    bool truncated = e.dropped_output_bytes > 0;
    for (const auto& out : e.outputs) {
        if (const auto* st = std::get_if<outputs::stream>(&out)) content.text(st->text);
        else if (const auto* r = std::get_if<outputs::execute_result>(&out)) content.data(r->data);
        else if (const auto* d = std::get_if<outputs::display_data>(&out)) content.data(d->data);
        else if (const auto* er = std::get_if<outputs::error>(&out)) {
            std::string tb;
            for (const auto& line : er->traceback) tb.append(line).append("\n");
            content.text(tb.empty() ? er->ename + ": " + er->evalue + "\n" : strip_ansi(tb));
        }
    }
    const bool state_lost = lost_before || e.restarted || s->restarts_seen != restarts_before;
    if (ctx.cancelled()) content.text("[kernex: cancelled: the kernel was interrupted]\n");
    if (!e.note.empty()) content.text("[kernex: " + e.note + "]\n");
    if (e.status == execution_status::timeout && e.note.empty())
        content.text("[kernex: timed out after " + seconds_text(timeout) + "; the kernel was interrupted]\n");
    if (e.status == execution_status::kernel_died && e.note.empty())
        content.text("[kernex: the kernel died: its state is lost]\n");
    return {{"content", content.finish()},
            {"structuredContent",
             {{"status", std::string(to_string(e.status))},
              {"session", s->id},
              {"execution_count", e.execution_count},
              {"state_lost", state_lost},
              {"truncated", truncated}}},
            {"isError", e.status != execution_status::ok}};
}

json engine::start_session(const std::string& owner, const json& args) {
    check_keys(args, {"kernel"});
    const std::string kernel = string_arg(args, "kernel", false).value_or(m_options.kernel_name);
    std::string id;
    {
        std::lock_guard lock(m_mutex);
        do id = random_id();
        while (m_sessions.contains(owner + '\n' + id));
    }
    auto s = new_session(owner, id, kernel);
    return {{"content", json::array({{{"type", "text"}, {"text", "session " + s->id + " (" + kernel + ") started"}}})},
            {"structuredContent", {{"session", s->id}, {"kernel", kernel}}}};
}

json engine::list_sessions(const std::string& owner) {
    json sessions = json::array();
    std::string text;
    const auto now = steady::now();
    std::lock_guard lock(m_mutex);
    for (const auto& [key, s] : m_sessions) {
        if (s->owner != owner) continue;
        const double idle = std::chrono::duration<double>(now - s->last_used).count();
        const bool busy = s->users.load() > 0;
        sessions.push_back({{"session", s->id}, {"kernel", s->kernel}, {"busy", busy}, {"idle_seconds", idle}});
        text += s->id + " (" + s->kernel + ")" + (busy ? " busy" : "") + "\n";
    }
    if (text.empty()) text = "no sessions\n";
    return {{"content", json::array({{{"type", "text"}, {"text", text}}})},
            {"structuredContent", {{"sessions", std::move(sessions)}}}};
}

json engine::restart_session(const std::string& owner, const json& args, call_context& ctx) {
    check_keys(args, {"session"});
    auto s = find_session(owner, *string_arg(args, "session", true));
    session_use use(*this, *s, ctx);
    if (s->closed) throw argument_error("session '" + s->id + "' was closed");
    s->km->restart();
    s->restarts_seen = s->km->restart_count();
    return {{"content", json::array({{{"type", "text"}, {"text", "session " + s->id + " restarted: its state is gone"}}})}};
}

json engine::close_session(const std::string& owner, const json& args) {
    check_keys(args, {"session"});
    const std::string id = *string_arg(args, "session", true);
    std::shared_ptr<session> s;
    {
        std::lock_guard lock(m_mutex);
        const auto it = m_sessions.find(owner + '\n' + id);
        if (it == m_sessions.end())
            throw argument_error("unknown session '" + id + "'; list_sessions shows yours");
        s = it->second;
        m_sessions.erase(it);
    }
    end_session(s);
    return {{"content", json::array({{{"type", "text"}, {"text", "session " + id + " closed"}}})}};
}

json engine::list_kernels() {
    json kernels = json::array();
    std::string default_name = m_options.kernel_name;
    if (m_options.gateway) {
        const auto specs = gateway_client(*m_options.gateway).kernelspecs();
        for (const auto& spec : specs.specs)
            kernels.push_back({{"name", spec.name}, {"display_name", spec.display_name}, {"language", spec.language}});
    } else {
        for (const auto& loc : list_kernelspecs()) {
            try {
                const auto spec = load_kernelspec(loc.resource_dir, loc.name);
                kernels.push_back({{"name", spec.name}, {"display_name", spec.display_name}, {"language", spec.language}});
            } catch (const kernex::error&) {
                // A broken kernel.json is not a kernel anyone can start.
            }
        }
    }
    std::string text;
    for (const auto& k : kernels)
        text += k["name"].get<std::string>() + " (" + k["language"].get<std::string>() + ")" +
                (k["name"] == default_name ? " default" : "") + "\n";
    return {{"content", json::array({{{"type", "text"}, {"text", text}}})},
            {"structuredContent", {{"default", default_name}, {"kernels", std::move(kernels)}}}};
}

void engine::close_owned(const std::string& owner) noexcept {
    std::vector<std::shared_ptr<session>> mine;
    {
        std::lock_guard lock(m_mutex);
        for (auto it = m_sessions.begin(); it != m_sessions.end();)
            if (it->second->owner == owner) {
                mine.push_back(it->second);
                it = m_sessions.erase(it);
            } else {
                ++it;
            }
    }
    end_sessions(mine);
}

void engine::shutdown() noexcept {
    std::map<std::string, std::shared_ptr<session>> all;
    {
        std::lock_guard lock(m_mutex);
        m_stopped = true;
        all.swap(m_sessions);
    }
    m_reaper.request_stop();
    m_wake.notify_all();
    if (m_reaper.joinable()) m_reaper.join();
    std::vector<std::shared_ptr<session>> sessions;
    for (auto& [key, s] : all) sessions.push_back(s);
    end_sessions(sessions);
    m_kernels.shutdown_all();
}

void engine::reap_idle(std::stop_token stop) {
    const auto period = std::clamp(m_options.session_idle / 4, std::chrono::milliseconds(100),
                                   std::chrono::milliseconds(5000));
    std::unique_lock lock(m_mutex);
    while (!stop.stop_requested()) {
        m_wake.wait_for(lock, stop, period, [] { return false; });
        if (stop.stop_requested()) break;
        std::vector<std::shared_ptr<session>> idle;
        const auto now = steady::now();
        for (auto it = m_sessions.begin(); it != m_sessions.end();)
            if (it->second->users.load() == 0 && now - it->second->last_used >= m_options.session_idle) {
                idle.push_back(it->second);
                it = m_sessions.erase(it);
            } else {
                ++it;
            }
        if (idle.empty()) continue;
        lock.unlock();
        end_sessions(idle);
        lock.lock();
    }
}

}  // namespace kernex::mcp
