#include "bash_interpreter.hpp"

#include "completion.hpp"
#include "display_file.hpp"
#include "shell_syntax.hpp"
#include "utf8.hpp"

#include <xeus/xhelper.hpp>

#include <signal.h>

#include <chrono>
#include <exception>
#include <mutex>
#include <optional>

#ifndef KERNEX_VERSION
#define KERNEX_VERSION "0"
#endif

namespace kernex::bash {

namespace {
// The interpreter the signal thread may reach; the mutex keeps it alive
// while that thread uses it.
std::mutex live_mutex;
bash_interpreter* live_interpreter = nullptr;
}  // namespace

bash_interpreter::bash_interpreter(std::string bash_path)
    : m_bash_path(bash_path), m_session(std::move(bash_path)) {
    xeus::register_interpreter(this);
    std::lock_guard lock(live_mutex);
    live_interpreter = this;
}

bash_interpreter::~bash_interpreter() {
    std::lock_guard lock(live_mutex);
    live_interpreter = nullptr;
}

void bash_interpreter::interrupt_live() noexcept {
    std::lock_guard lock(live_mutex);
    if (!live_interpreter) return;
    live_interpreter->m_session.request_interrupt();
    live_interpreter->cancel_input();
}

void bash_interpreter::cancel_input() noexcept {
    m_input_cancelled = true;
    // Repeated: a signal that lands between the main thread's check and its
    // recv would be lost. Bounded: the wait ends on the first one taken.
    for (int i = 0; i < 100 && m_waiting_input; ++i) {
        pthread_kill(m_main_handle, SIGUSR1);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

input_answer bash_interpreter::ask_client(const std::string& prompt, bool password, bool allowed) {
    if (!allowed) return {};
    if (m_input_cancelled) return {.what = input_answer::kind::cancelled, .value = {}};
    std::optional<std::string> value;
    register_input_handler([&value](const std::string& v) { value = v; });
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    m_waiting_input = true;
    pthread_sigmask(SIG_UNBLOCK, &usr1, nullptr);
    if (!m_input_cancelled) {
        try {
            input_request(sanitize(prompt), password);
        } catch (const std::exception&) {
            // EINTR out of xeus's recv: cancelled.
        }
    }
    pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
    m_waiting_input = false;
    register_input_handler(nullptr);
    if (!value) return {.what = input_answer::kind::cancelled, .value = {}};
    return {.what = input_answer::kind::given, .value = *value};
}

void bash_interpreter::terminate_live() noexcept {
    std::lock_guard lock(live_mutex);
    if (live_interpreter) live_interpreter->m_session.terminate_group();
}

void bash_interpreter::configure_impl() {
    std::lock_guard lock(m_session_mutex);
    m_session.start();
    remember_version();
}

void bash_interpreter::remember_version() {
    std::lock_guard lock(m_version_mutex);
    m_version = m_session.version();
}

bool bash_interpreter::ensure_shell(bool silent) {
    if (m_session.running()) return true;
    if (m_shutting_down) return false;
    try {
        m_session.start();
        remember_version();
        return true;
    } catch (const std::exception& e) {
        if (!silent) publish_stream("stderr", std::string("kernex-bash: ") + e.what() + "\n");
        return false;
    }
}

nl::json bash_interpreter::error_reply(const std::string& ename, const std::string& evalue,
                                       const std::string& explanation, bool silent) {
    const std::vector<std::string> traceback = {explanation};
    if (!silent) publish_execution_error(ename, evalue, traceback);
    // Built here: xeus 2.4's create_error_reply swaps ename and evalue.
    return {{"status", "error"}, {"ename", ename}, {"evalue", evalue}, {"traceback", traceback}};
}

nl::json bash_interpreter::evaluate_user_expressions(const nl::json& expressions) {
    nl::json results = nl::json::object();
    if (!expressions.is_object()) return results;
    for (const auto& [name, expression] : expressions.items()) {
        if (!expression.is_string()) continue;
        results[name] = {{"status", "ok"},
                         {"data", {{"text/plain", sanitize(m_session.query(expression.get<std::string>()))}}},
                         {"metadata", nl::json::object()}};
    }
    return results;
}

namespace {

// Blank lines and comments only: nothing for the shell to run. Sent anyway,
// such a cell would "end" with the $? carried from the previous cell and
// report an old failure as its own.
bool has_no_commands(const std::string& code) {
    std::size_t start = 0;
    while (start <= code.size()) {
        std::size_t end = code.find('\n', start);
        if (end == std::string::npos) end = code.size();
        const auto first = code.find_first_not_of(" \t\r", start);
        if (first != std::string::npos && first < end && code[first] != '#') return false;
        start = end + 1;
    }
    return true;
}

}  // namespace

nl::json bash_interpreter::execute_request_impl(int execution_counter, const std::string& code,
                                                bool silent, bool store_history,
                                                nl::json user_expressions, bool allow_stdin) {
    // An execute_request sent on the control channel would run beside the
    // shell thread's cell; a client that does so gets it aborted.
    if (!on_main_thread()) return {{"status", "aborted"}};
    if (m_history && store_history && !silent) m_history->set_next_line(execution_counter);
    std::lock_guard lock(m_session_mutex);
    if (has_no_commands(code))
        return xeus::create_successful_reply(nl::json::array(),
                                             evaluate_user_expressions(user_expressions));
    if (!ensure_shell(silent))
        return error_reply("ShellUnavailable", "bash could not be started",
                           "ShellUnavailable: bash could not be started", silent);

    cell_handlers handlers;
    handlers.on_stream = [this, silent](const std::string& name, const std::string& text) {
        if (!silent) publish_stream(name, text);
    };
    handlers.on_display = [this, silent](const std::string& path) {
        display_content content = load_display_file(path);
        if (content.data.empty()) {
            if (!silent) publish_stream("stderr", "display: " + sanitize(content.error) + "\n");
            return false;
        }
        if (!silent) display_data(std::move(content.data), nl::json::object(), nl::json::object());
        return true;
    };

    m_input_cancelled = false;
    handlers.on_input = [this, silent, allow_stdin](const std::string& prompt, bool password) {
        return ask_client(prompt, password, allow_stdin && !silent);
    };
    handlers.on_clear = [this, silent](bool wait) {
        if (!silent) clear_output(wait);
    };

    const cell_outcome outcome = m_session.run_cell(code, handlers);
    const std::string status = std::to_string(outcome.status);
    switch (outcome.end) {
    case cell_end::shell_exited: {
        // State is gone: say so, and have a fresh shell ready for the next cell.
        std::string note = "kernex-bash: the shell ended (" + outcome.how_shell_ended +
                           "); its variables, functions and directory are lost";
        note += ensure_shell(true) ? "; a new shell is ready.\n" : "; no new shell could be started.\n";
        if (!silent) publish_stream("stderr", note);
        if (outcome.status == 0) break;
        return error_reply("ExitStatus", status,
                           "ExitStatus: the shell exited with status " + status, silent);
    }
    case cell_end::interrupted:
        return error_reply("Interrupted", status,
                           "Interrupted: the cell was stopped by SIGINT (status " + status + ")",
                           silent);
    case cell_end::finished:
        if (outcome.status != 0)
            return error_reply("ExitStatus", status,
                               "ExitStatus: the last command exited with status " + status, silent);
        break;
    }
    return xeus::create_successful_reply(nl::json::array(),
                                         evaluate_user_expressions(user_expressions));
}

nl::json bash_interpreter::complete_request_impl(const std::string& code, int cursor_pos) {
    const std::size_t cursor = byte_offset(code, static_cast<std::size_t>(std::max(cursor_pos, 0)));
    const completion_plan plan = plan_completion(code, cursor);
    std::vector<std::string> matches;
    // On the control channel (another thread) the session is not ours to ask: no matches.
    if (plan.kind != completion_kind::none && on_main_thread()) {
        std::lock_guard lock(m_session_mutex);
        if (ensure_shell(true))
            matches = completion_matches(plan, m_session.query(completion_query(plan)));
    }
    nl::json sanitized = nl::json::array();
    for (const auto& m : matches) sanitized.push_back(sanitize(m));
    return xeus::create_complete_reply(
        sanitized, static_cast<int>(code_point_count(code, plan.start)),
        static_cast<int>(code_point_count(code, plan.end)));
}

nl::json bash_interpreter::inspect_request_impl(const std::string& code, int cursor_pos,
                                                int /*detail_level*/) {
    const std::size_t cursor = byte_offset(code, static_cast<std::size_t>(std::max(cursor_pos, 0)));
    const std::string word = word_at(code, cursor);
    std::string text;
    if (!word.empty() && on_main_thread()) {
        std::lock_guard lock(m_session_mutex);
        if (ensure_shell(true)) text = sanitize(m_session.query(inspect_query(word)));
    }
    if (text.empty()) return xeus::create_inspect_reply(false);
    return xeus::create_inspect_reply(true, {{"text/plain", text}});
}

nl::json bash_interpreter::is_complete_request_impl(const std::string& code) {
    const completeness result = check_completeness(m_bash_path, code);
    return xeus::create_is_complete_reply(result.status, result.indent);
}

nl::json bash_interpreter::kernel_info_request_impl() {
    std::string version;
    {
        std::lock_guard lock(m_version_mutex);
        version = m_version;
    }
    const std::string short_version = version.substr(0, version.find('('));
    return xeus::create_info_reply(
        "5.3", "kernex-bash", KERNEX_VERSION, "bash", short_version, "text/x-sh", ".sh", "bash",
        "shell", "",
        "kernex-bash " KERNEX_VERSION ": a stateful GNU bash " + version +
            " session.\n`display FILE` shows PNG, JPEG, GIF, SVG and HTML files; `clear` clears "
            "the cell's output.");
}

// On the control thread. An idle session is stopped here; a running cell's
// shell group is ended, and the main thread, seeing its shell die, starts no
// new one.
void bash_interpreter::shutdown_request_impl() {
    m_shutting_down = true;
    std::unique_lock lock(m_session_mutex, std::try_to_lock);
    if (lock.owns_lock()) {
        m_session.stop();
    } else {
        m_session.terminate_group();
        cancel_input();
    }
}

}  // namespace kernex::bash
