#include "kernex/local_executor.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>

#include "confine/environment.hpp"
#include "confine/sandbox.hpp"
#include "executors/code_files.hpp"
#include "executors/executor_config.hpp"
#include "kernex/error.hpp"
#include "kernex/process.hpp"
#include "process/dir_keeper.hpp"
#include "process/remove_tree.hpp"
#include "runner/runner_client.hpp"

namespace kernex {

namespace {

namespace fs = std::filesystem;

const std::vector<detail::file_language>& language_table() {
    static const std::vector<detail::file_language> table = {
        {{"bash"}, "bash", "sh", {}},
        {{"sh", "shell"}, "sh", "sh", {}},
        {{"python", "py", "python3"}, "python3", "py", {}},
        {{"javascript", "js", "node", "nodejs"}, "node", "js", {}},
        {{"pwsh", "powershell", "ps1"}, "pwsh", "ps1", {"-NoProfile", "-NonInteractive", "-File"}},
    };
    return table;
}

// What one block needs to run, worked out before anything runs.
struct planned_block {
    std::string name;                // as written (directive) or content-hashed, relative to the work dir
    std::vector<std::string> argv;   // interpreter and its arguments; the file goes last
};

// One block through the sandbox's resident runner, as run_process would run
// it: the same environment, cwd and rlimits, output merged in arrival order;
// the runner kills everything the block started before it answers. A runner
// that fails is said and counts as the block failing; the next block starts
// a fresh one.
run_result run_in_runner(detail::runner_session& runner, const spawn_options& spawn, std::chrono::milliseconds left,
                         int cancel_fd, detail::block_output& out, const std::function<void(const std::string&)>& say) {
    detail::runner_request request;
    request.argv = spawn.argv;
    for (const auto& [name, value] : spawn.env) request.env.push_back(name + "=" + value);
    request.cwd = spawn.cwd ? spawn.cwd->string() : std::string();
    request.scrub_dir = "/tmp";  // the sandbox's private /tmp is fresh for every block, as with a bwrap per block
    request.timeout = left;
    request.rlimits = spawn.rlimits;
    const auto verdict =
        detail::judge(runner.run(request, [&out](char, std::string_view text) { out.emit(text); }, cancel_fd),
                      "the sandbox");
    for (const auto& line : verdict.lines) say(line);
    if (verdict.replace) runner.stop();
    run_result run;
    run.exit_code = verdict.exit_code;
    run.timed_out = verdict.timed_out;
    run.interrupted = verdict.interrupted;
    return run;
}

}  // namespace

local_executor::local_executor(local_executor_options options) : m_options(std::move(options)) {
    std::map<std::string, std::string> interpreters;
    for (const auto& [name, program] : m_options.interpreters) {
        const auto* lang = detail::find_language(language_table(), name);
        if (!lang)
            throw error(errc::invalid_argument, "interpreter given for unknown language '" + name +
                                                    "'; the local executor runs " +
                                                    detail::known_languages(language_table()));
        interpreters[lang->names[0]] = program;
    }
    m_options.interpreters = std::move(interpreters);
    if (m_options.work_dir) m_options.work_dir = fs::absolute(*m_options.work_dir);
    if (m_options.sandbox) detail::sandbox_program();  // refuses now, not at the first block

    detail::open_cancel_pipe(m_cancel_read, m_cancel_write);
    try {
        if (m_options.work_dir) make_work_dir(false);
    } catch (...) {
        ::close(m_cancel_read);
        ::close(m_cancel_write);
        throw;
    }
}

local_executor::~local_executor() {
    stop();
    ::close(m_cancel_read);
    ::close(m_cancel_write);
}

const fs::path& local_executor::work_dir() {
    if (m_work_dir.empty()) make_work_dir(true);
    return m_work_dir;
}

void local_executor::make_work_dir(bool with_keeper) {
    // What held a dir made before (removed by someone since) must not
    // remove whatever takes its name later.
    m_holder.reset();
    m_keeper.reset();
    auto made = detail::make_work_dir(m_options.work_dir);
    m_work_dir = std::move(made.path);
    m_owns_work_dir = made.temporary;
    if (with_keeper) hold_work_dir();
}

void local_executor::hold_work_dir() noexcept {
    if (!m_owns_work_dir || m_holder || m_keeper) return;
    try {
        m_keeper = std::make_unique<detail::dir_keeper>(m_work_dir);
    } catch (...) {
        // Without it, only a kill -9 between blocks leaves the dir (mid-block the block's reaper removes it).
    }
}

void local_executor::stop() noexcept {
    m_runner.reset();  // its bwrap and every process in it, before the dir they use goes
    m_runner_dir.clear();
    if (m_owns_work_dir) {
        // Removed with its holder still there: a kill -9 meanwhile, and the holder finishes it.
        detail::remove_tree(m_work_dir.c_str());  // dirs the blocks made read-only too
        m_work_dir.clear();
        m_owns_work_dir = false;
    }
    m_holder.reset();  // told to leave the dir alone: it is gone, or not ours
    m_keeper.reset();
}

detail::sandbox_request local_executor::sandbox_view(const fs::path& dir) const {
    detail::sandbox_request view;
    view.work_dir = dir;
    view.read_only = m_options.sandbox->read_only;
    for (const auto& p : m_options.path_prefix) view.read_only.push_back(fs::absolute(p));
    return view;
}

detail::runner_session* local_executor::sandbox_runner(const fs::path& dir) {
    if (m_runner && m_runner->usable() && m_runner_dir == dir) return m_runner.get();
    m_runner.reset();
    m_runner_dir.clear();
    try {
        spawn_options session;
        const fs::path runner = detail::runner_host_path();
        session.argv = detail::sandbox_runner_argv(sandbox_view(dir), runner.string());
        session.remove_if_orphaned = {runner, runner.parent_path()};
        session.inherit_environment = false;
        session.env = {{"PATH", detail::sandbox_path()}};
        // A temporary work dir goes with kernex: the session's reaper removes it after a kill -9.
        if (m_owns_work_dir) session.remove_tree_if_orphaned = dir;
        m_runner = std::make_unique<detail::runner_session>(session);
        m_runner_dir = dir;
        m_runner_failure.clear();
    } catch (const error& e) {
        m_runner_failure = e.what();
    }
    return m_runner.get();
}

void local_executor::interrupt() noexcept { detail::send_cancel(m_cancel_write); }

std::vector<std::vector<std::string>> local_executor::languages() { return detail::language_names(language_table()); }

code_result local_executor::execute_blocks(const std::vector<code_block>& blocks, const output_handler& on_output) {
    code_result result;
    detail::block_output out(result, on_output, {m_options.max_output, m_options.max_output_head});
    auto say = [&](const std::string& line) { out.say(line); };
    detail::drain_cancel(m_cancel_read);

    std::error_code ec;
    // The first time, after stop(), or when someone removed it: made (a
    // fresh temporary one, or the one given). Held from the start by a
    // keeper only when something comes before the first block's reaper,
    // which holds it otherwise: a prompt, the full output's file, the
    // sandbox's runner. Between mkdtemp and that reaper's start (the plan
    // and the block's file, well under a millisecond), a kill -9 leaves it.
    if (m_work_dir.empty() || !fs::is_directory(m_work_dir, ec))
        make_work_dir(has_approve() || m_options.save_full_output || m_options.sandbox.has_value());
    // Whatever ends this call, a temporary dir no reaper holds gets a keeper.
    struct hold_at_end {
        local_executor* self;
        ~hold_at_end() { self->hold_work_dir(); }
    } hold{this};
    const fs::path dir = fs::canonical(m_work_dir, ec);
    if (ec) throw error(errc::io_error, "the work dir " + m_work_dir.string() + " is gone: " + ec.message());
    if (m_options.save_full_output) out.save_full_output(dir);
    result.temporary_work_dir = m_owns_work_dir;

    spawn_options spawn;
    spawn.cwd = dir;
    // Nothing the block starts can kill its reaper, nor outlive it (when
    // kernex may make a pid namespace; the sandbox has its own).
    spawn.own_pid_namespace = true;
    // A temporary work dir goes with kernex: removed by the block's reaper
    // if kernex dies mid-block; between blocks, by the last block's reaper,
    // which stays until the next block's has it (m_holder).
    if (m_owns_work_dir) {
        spawn.remove_tree_if_orphaned = dir;
        spawn.linger = true;
    }
    spawn.inherit_environment = false;
    spawn.env = detail::code_environment(m_options.env, m_options.inherit_env);
    // Python's stdout is block-buffered into a pipe: its prints would come
    // after its traceback instead of in the order they happened.
    spawn.env.emplace("PYTHONUNBUFFERED", "1");
    if (m_options.sandbox) {
        spawn.env = detail::sandbox_environment(std::move(spawn.env), m_options.path_prefix);
        spawn.rlimits = detail::sandbox_rlimits(*m_options.sandbox);
    } else {
        std::string path;
        for (const auto& p : m_options.path_prefix) path.append(fs::absolute(p).string()).append(":");
        const auto env_path = spawn.env.find("PATH");
        path += env_path != spawn.env.end() ? env_path->second : "";
        if (!path.empty() && path.back() == ':') path.pop_back();
        if (!path.empty()) spawn.env["PATH"] = path;
    }
    const auto path_it = spawn.env.find("PATH");
    const std::string_view child_path = path_it != spawn.env.end() ? std::string_view(path_it->second) : "";

    // Everything is checked before anything is written or run: a message
    // whose third block cannot run runs none.
    std::vector<planned_block> plan;
    for (const auto& block : blocks) {
        const auto* lang = detail::find_language(language_table(), block.language);
        if (!lang) {
            say("unknown language '" + block.language + "': the local executor runs " +
                detail::known_languages(language_table()));
            result.exit_code = 1;
            return result;
        }
        const auto configured = m_options.interpreters.find(lang->names[0]);
        const std::string& program = configured != m_options.interpreters.end() ? configured->second : lang->program;
        const auto executable = find_program(program, child_path, dir);
        if (!executable) {
            say("language '" + block.language + "' is not available: '" + program + "' was not found" +
                (program.find('/') == std::string::npos ? " on PATH" : ""));
            result.exit_code = 1;
            return result;
        }
        planned_block step;
        const auto name = detail::block_file_name(dir, block.code, lang->extension);
        if (!name) {
            say(detail::filename_refusal(detail::filename_directive(block.code)));
            result.exit_code = 1;
            return result;
        }
        step.name = *name;
        step.argv.push_back(executable->string());
        step.argv.insert(step.argv.end(), lang->arguments.begin(), lang->arguments.end());
        plan.push_back(std::move(step));
    }

    auto deadline = clock::now() + m_options.timeout;
    bool said_fallback = false;
    for (std::size_t i = 0; i < plan.size(); ++i) {
        if (const auto a = approve_block(blocks, i, result, deadline, say); a != approval::run) {
            if (a == approval::skip) continue;
            break;
        }
        ++result.blocks;
        const auto file = detail::write_block_file(dir, plan[i].name, blocks[i].code, out);
        if (!file) {
            result.exit_code = 1;
            break;
        }
        result.code_files.push_back(*file);

        spawn.argv = plan[i].argv;
        // Relative, as the code's own messages will show it; "./" keeps a
        // name starting with '-' from being read as an option.
        std::string relative = file->lexically_relative(dir).string();
        spawn.argv.push_back(relative.starts_with("-") ? "./" + relative : relative);
        detail::runner_session* runner =
            m_options.sandbox && m_options.sandbox->resident_runner ? sandbox_runner(dir) : nullptr;
        if (m_options.sandbox && !runner) {
            if (!said_fallback && m_options.sandbox->resident_runner)
                result.notes.push_back("sandbox: a bwrap per block (the resident runner could not start: " +
                                       m_runner_failure + ")");
            said_fallback = true;
            spawn.argv = detail::sandbox_argv(sandbox_view(dir), spawn.argv);
        }

        const auto block = detail::limit_for_block(deadline, m_options.timeout, m_options.block_timeout);
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(block.deadline - clock::now());
        run_result run;
        if (left.count() > 0 && runner) {
            run = run_in_runner(*runner, spawn, left, m_cancel_read, out, say);
        } else if (left.count() > 0) {
            run_options limits;
            limits.timeout = left;
            limits.max_output = 0;  // out keeps what is kept, its head and its tail
            limits.on_output_uncapped = true;
            limits.on_output = [&out](std::string_view text) { out.emit(text); };
            limits.cancel_fd = m_cancel_read;
            child_process lingering;
            limits.lingering = &lingering;
            run = run_process(spawn, limits);
            if (lingering.status()) {
                // The new holder first, then the old one (or the keeper) goes.
                m_holder = std::make_unique<child_process>(std::move(lingering));
                m_keeper.reset();
            }
        } else {
            run.timed_out = true;
        }
        if (run.timed_out) {
            say(detail::timeout_line(block.limit));
            result.exit_code = 124;
            result.timed_out = true;
            break;
        }
        if (run.interrupted) {
            say("Interrupted");
            result.exit_code = 130;
            break;
        }
        if (run.exit_code != 0) {
            result.exit_code = run.exit_code;
            break;
        }
    }
    out.finish();
    return result;
}

namespace detail {

std::unique_ptr<code_executor> make_local_executor(const nlohmann::json& config) {
    const executor_config c(config, "local");
    local_executor_options options;
    if (auto v = c.string("work_dir")) options.work_dir = *v;
    if (auto v = c.seconds("timeout")) options.timeout = *v;
    if (auto v = c.seconds("block_timeout")) options.block_timeout = *v;
    if (auto v = c.count("max_output")) options.max_output = *v;
    if (auto v = c.count("max_output_head")) options.max_output_head = *v;
    if (auto v = c.boolean("save_full_output")) options.save_full_output = *v;
    detail::output_cap{options.max_output, options.max_output_head}.check("local");
    if (auto v = c.environment("env")) options.env = std::move(*v);
    if (auto v = c.boolean("inherit_env")) options.inherit_env = *v;
    if (c.boolean("sandbox").value_or(false)) options.sandbox.emplace();
    if (auto v = c.boolean("resident_runner")) {
        if (!options.sandbox)
            throw error(errc::invalid_argument, "option 'resident_runner' of executor local needs sandbox: true");
        options.sandbox->resident_runner = *v;
    }
    const std::pair<const char*, std::optional<std::uint64_t> sandbox_options::*> limits[] = {
        {"rlimit_cpu", &sandbox_options::cpu_seconds},  {"rlimit_as", &sandbox_options::address_space},
        {"rlimit_fsize", &sandbox_options::file_size},  {"rlimit_nofile", &sandbox_options::open_files},
        {"rlimit_nproc", &sandbox_options::processes},
    };
    for (const auto& [key, field] : limits)
        if (auto v = c.count(key)) {
            if (!options.sandbox) throw error(errc::invalid_argument, std::string("option '") + key +
                                                                          "' of executor local needs sandbox: true");
            (*options.sandbox).*field = *v;
        }
    if (auto v = c.string_list("path_prefix")) options.path_prefix.assign(v->begin(), v->end());
    if (auto v = c.string_map("interpreters")) options.interpreters = std::move(*v);
    return std::make_unique<local_executor>(std::move(options));
}

}  // namespace detail

}  // namespace kernex
