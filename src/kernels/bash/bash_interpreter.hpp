// kernex-bash's xeus interpreter: Jupyter requests in, a shell_session out.
// xeus calls every method on its main thread (the one polling the shell and
// control sockets), so publishing from here is safe.
#pragma once

#include "shell_session.hpp"

#include <xeus/xinterpreter.hpp>

#include <string>

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
    // Starts a new shell after the old one ended; false (and a message) when it cannot.
    bool ensure_shell(bool silent);

    std::string m_bash_path;
    shell_session m_session;
};

}  // namespace kernex::bash
