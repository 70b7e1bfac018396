// kernex kernel interrupt / kernel shutdown, kernex complete / inspect: the
// requests a script or an agent sends to a running kernel, without C++. The
// kernel is named by its connection file, or as `jupyter console --existing`
// names it (kernel-ID.json, kernel-ID or ID, found in the runtime dir); the
// kernel's reply is printed on stdout as one line of JSON (its content).
// Exit status: 0 when the kernel answered, 1 when it answered with an error
// status, 2 when kernex could not ask (no such kernel, no answer in time).
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "cli/commands.hpp"
#include "kernex/connection.hpp"
#include "kernex/error.hpp"
#include "kernex/kernel_client.hpp"

namespace kernex::cli {

namespace {

struct request_args {
    std::string kernel;
    std::string code;
    std::optional<int> cursor_pos;
    int detail_level = 0;
    bool restart = false;
    double timeout = 10;
};

std::chrono::milliseconds timeout_of(const request_args& a) {
    check_seconds("--timeout", a.timeout);
    return std::chrono::milliseconds(static_cast<long long>(a.timeout * 1000));
}

kernel_client connect(const request_args& a) { return kernel_client::from_connection_file(find_connection_file(a.kernel)); }

// ask(), a request that went unanswered said as kernex run and exec say a
// timeout: "Timeout: the kernel did not answer interrupt_request within 10 s".
template <typename F>
json answer_of(const request_args& a, const std::string& what, F&& ask, const std::string& hint = {}) {
    const auto timeout = timeout_of(a);
    try {
        return ask(timeout);
    } catch (const error& e) {
        if (e.code() != errc::timeout) throw;
        throw error(errc::timeout, "Timeout: the kernel did not answer " + what + " within " + seconds_of(a.timeout) + hint);
    }
}

// The protocol counts the cursor in Unicode code points.
int code_points(std::string_view utf8) {
    int n = 0;
    for (const unsigned char c : utf8)
        if ((c & 0xC0) != 0x80) ++n;
    return n;
}

int cursor_of(const request_args& a) {
    const int end = code_points(a.code);
    const int pos = a.cursor_pos.value_or(end);
    if (pos < 0 || pos > end)
        throw error(errc::invalid_argument, "the cursor position " + std::to_string(pos) +
                                                " is outside the code (0 to " + std::to_string(end) +
                                                ", in characters)");
    return pos;
}

// Prints the reply; its status is the exit status (ipykernel's
// interrupt_reply has none: only an error status is a failure).
int print_reply(const json& reply, const std::string& what) {
    std::cout << reply.dump(-1, ' ', false, json::error_handler_t::replace) << "\n" << std::flush;
    const auto status = reply.find("status");
    if (status == reply.end() || !status->is_string() || *status != "error") return 0;
    std::string why = "the kernel answered " + what + " with an error";
    if (reply.contains("ename") && reply["ename"].is_string()) why += ": " + reply["ename"].get<std::string>();
    if (reply.contains("evalue") && reply["evalue"].is_string()) why += ": " + reply["evalue"].get<std::string>();
    std::cerr << "kernex: " << why << "\n";
    return 1;
}

void add_kernel_option(CLI::App* cmd, request_args& a) {
    cmd->add_option("kernel", a.kernel,
                    "The kernel's connection file, or kernel-ID.json / ID in the Jupyter runtime dir\n"
                    "(as jupyter console --existing takes it)")
        ->required();
}

void add_timeout_option(CLI::App* cmd, request_args& a) {
    cmd->add_option("--timeout", a.timeout, "Seconds to wait for the kernel's reply")->capture_default_str();
}

void add_code_options(CLI::App* cmd, request_args& a) {
    cmd->add_option("code", a.code, "The code ('-' reads it from stdin)")->required();
    cmd->add_option("cursor_pos", a.cursor_pos, "The cursor's position in the code, in characters (default: its end)");
}

}  // namespace

std::function<std::optional<int>()> add_kernel_requests(CLI::App& kernel) {
    auto a = std::make_shared<request_args>();
    auto* interrupt = kernel.add_subcommand(
        "interrupt",
        "Interrupt the cell a kernel runs (interrupt_request on its control channel), as Ctrl-C\n"
        "in jupyter console; prints the kernel's reply");
    add_kernel_option(interrupt, *a);
    add_timeout_option(interrupt, *a);
    auto* shutdown = kernel.add_subcommand(
        "shutdown",
        "Shut a kernel down (shutdown_request on its control channel), as `exit` in jupyter\n"
        "console; prints the kernel's reply. A kernel from `kernex kernel start` ends it");
    add_kernel_option(shutdown, *a);
    shutdown->add_flag("--restart", a->restart, "Ask for a restart instead (the kernel's manager restarts it)");
    add_timeout_option(shutdown, *a);
    return [a, interrupt, shutdown]() -> std::optional<int> {
        if (interrupt->parsed())
            return print_reply(
                answer_of(*a, "interrupt_request", [&](auto timeout) { return connect(*a).interrupt_request(timeout); },
                          ": a kernel whose kernelspec says interrupt_mode signal may not answer it; its manager "
                          "interrupts it with SIGINT (Ctrl-C on `kernex kernel start`)"),
                "interrupt_request");
        if (shutdown->parsed())
            return print_reply(
                answer_of(*a, "shutdown_request", [&](auto timeout) { return connect(*a).shutdown(a->restart, timeout); }),
                "shutdown_request");
        return std::nullopt;
    };
}

command_runner add_complete_command(CLI::App& app) {
    auto a = std::make_shared<request_args>();
    auto* cmd = app.add_subcommand(
        "complete", "Ask a running kernel for completions of code at the cursor (complete_request);\n"
                    "prints the reply: matches, cursor_start, cursor_end, metadata");
    add_kernel_option(cmd, *a);
    add_code_options(cmd, *a);
    add_timeout_option(cmd, *a);
    return [a] {
        timeout_of(*a);  // checked before stdin is read
        if (a->code == "-") a->code = read_input("-");
        return print_reply(answer_of(*a, "complete_request",
                                     [&](auto timeout) { return connect(*a).complete(a->code, cursor_of(*a), timeout); }),
                           "complete_request");
    };
}

command_runner add_inspect_command(CLI::App& app) {
    auto a = std::make_shared<request_args>();
    auto* cmd = app.add_subcommand(
        "inspect", "Ask a running kernel about the name at the cursor (inspect_request: what\n"
                   "help() or ? shows); prints the reply: found, data (a MIME bundle), metadata");
    add_kernel_option(cmd, *a);
    add_code_options(cmd, *a);
    cmd->add_option("--detail", a->detail_level, "0, or 1 for more (IPython: the source)")
        ->check(CLI::IsMember({0, 1}))
        ->capture_default_str();
    add_timeout_option(cmd, *a);
    return [a] {
        timeout_of(*a);  // checked before stdin is read
        if (a->code == "-") a->code = read_input("-");
        return print_reply(answer_of(*a, "inspect_request",
                                     [&](auto timeout) {
                                         return connect(*a).inspect(a->code, cursor_of(*a), a->detail_level, timeout);
                                     }),
                           "inspect_request");
    };
}

}  // namespace kernex::cli
