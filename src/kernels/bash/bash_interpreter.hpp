// kernex-bash's xeus interpreter: Jupyter requests in, a shell_session out.
// Shell-channel requests arrive on the main thread, control-channel ones on
// xeus's control thread while a cell may run (kernel_server.hpp): only the
// main thread touches the session; the control thread may read the cached
// version, interrupt, and end the shell (shutdown).
#pragma once

#include "history_manager.hpp"
#include "shell_session.hpp"

#include <xeus/xinterpreter.hpp>

#include <pthread.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

namespace kernex::bash {

class bash_interpreter final : public xeus::xinterpreter {
public:
    explicit bash_interpreter(std::string bash_path);
    ~bash_interpreter() override;

    // For the signal thread, safe while another thread destroys the
    // interpreter: stop the running cell / end the shell's process group of
    // the live interpreter, if there is one.
    static void interrupt_live() noexcept;
    static void terminate_live() noexcept;

    // The history manager xeus stores cells in (owned by the kernel, which
    // outlives every request): told each cell's execution count.
    void use_history(history_manager* history) noexcept { m_history = history; }

private:
    void configure_impl() override;
    nl::json execute_request_impl(int execution_counter, const std::string& code, bool silent,
                                  bool store_history, nl::json user_expressions,
                                  bool allow_stdin) override;
    nl::json complete_request_impl(const std::string& code, int cursor_pos) override;
    nl::json inspect_request_impl(const std::string& code, int cursor_pos,
                                  int detail_level) override;
    nl::json is_complete_request_impl(const std::string& code) override;
    nl::json kernel_info_request_impl() override;
    void shutdown_request_impl() override;

    nl::json error_reply(const std::string& ename, const std::string& evalue,
                         const std::string& explanation, bool silent);
    nl::json evaluate_user_expressions(const nl::json& expressions);
    // Asks the client (input_request) on the main thread; cancelled when an
    // interrupt or a shutdown arrives meanwhile (see cancel_input).
    input_answer ask_client(const std::string& prompt, bool password, bool allowed);
    // From another thread: makes a waiting ask_client return. xeus waits for
    // the input_reply in a blocking ZeroMQ recv; SIGUSR1 (unblocked on the
    // main thread only while it waits, handled without SA_RESTART) ends it
    // with EINTR.
    void cancel_input() noexcept;

    // Starts a new shell after the old one ended; false (and a message) when
    // it cannot or the kernel is shutting down. Requires m_session_mutex.
    bool ensure_shell(bool silent);
    void remember_version();
    bool on_main_thread() const noexcept { return std::this_thread::get_id() == m_main_thread; }

    std::string m_bash_path;
    const std::thread::id m_main_thread = std::this_thread::get_id();
    const pthread_t m_main_handle = pthread_self();
    std::atomic<bool> m_waiting_input{false};
    std::atomic<bool> m_input_cancelled{false};
    std::mutex m_session_mutex;  // held by the main thread while it uses m_session
    std::atomic<bool> m_shutting_down{false};
    std::mutex m_version_mutex;
    std::string m_version;  // bash's version, for kernel_info on either thread
    shell_session m_session;
    history_manager* m_history = nullptr;
};

}  // namespace kernex::bash
