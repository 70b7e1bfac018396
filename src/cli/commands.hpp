// Each kernex subcommand registers itself on the CLI11 app and returns the
// function that runs it; main.cpp dispatches to the one the user chose.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "kernex/error.hpp"

namespace kernex::cli {

using command_runner = std::function<int()>;

// The text of file, or of stdin when file is "-". Throws kernex::error
// naming the file: not_found (missing), io_error (unreadable),
// invalid_argument (a directory; not UTF-8, with the line).
std::string read_input(const std::string& file);

// Throws kernex::error(invalid_argument) naming file and line at the first
// byte of text that is not UTF-8.
void check_utf8(std::string_view text, const std::string& file);

// A secret (the server's token) from a file: its one line, without the
// newline. Throws as read_input, and for an empty file.
std::string read_token_file(const std::string& file);

// The largest number of seconds a flag takes: a year (larger values
// overflow the clock's range).
inline constexpr double max_seconds = 365.0 * 24 * 3600;

// Throws kernex::error(invalid_argument) naming flag unless value is a
// number of seconds above 0 (or 0, when zero_means says what 0 means: "no
// limit") up to max_seconds.
void check_seconds(const char* flag, double value, const char* zero_means = nullptr);

// "2 s", "1.5 s": seconds as kernex's messages say them ("Timeout: the
// code ran longer than 2 s and was stopped"), in every command.
std::string seconds_of(double seconds);
std::chrono::milliseconds milliseconds_of(double seconds);

// A flag of `kernex exec` or `kernex mcp` that sets args->config[key] (an
// executor option of make_executor) to its value. A repeatable flag (T a
// vector) takes one value each time: `--env A=1 -` leaves '-' to the
// positional. When Args has `flags` (key -> flag), the flag is recorded
// there, so that messages about key can name the flag.
template <typename T, typename Args>
CLI::Option* config_option(CLI::App* cmd, const std::shared_ptr<Args>& args, const std::string& flag,
                           const std::string& key, const std::string& help) {
    auto* option = cmd->add_option_function<T>(flag, [args, key](const T& value) { args->config[key] = value; }, help);
    if constexpr (requires { args->flags[key] = option->get_name(); }) args->flags[key] = option->get_name();
    if constexpr (!std::is_same_v<T, std::string> && requires(T t) { t.push_back(std::string()); })
        option->allow_extra_args(false);
    return option;
}

// --interpreter LANG=PROGRAM (repeatable): the local executor's
// interpreters option, as kernex exec and kernex mcp take it.
template <typename Args>
CLI::Option* interpreter_option(CLI::App* cmd, const std::shared_ptr<Args>& args, const std::string& help) {
    auto* option = cmd->add_option_function<std::vector<std::string>>(
        "--interpreter",
        [args](const std::vector<std::string>& items) {
            for (const auto& item : items) {
                const auto eq = item.find('=');
                if (eq == 0 || eq == std::string::npos || eq + 1 == item.size())
                    throw CLI::ValidationError("--interpreter",
                                               "'" + item + "': give LANG=PROGRAM (python=/opt/py/bin/python3)");
                args->config["interpreters"][item.substr(0, eq)] = item.substr(eq + 1);
            }
        },
        help);
    option->allow_extra_args(false);
    if constexpr (requires { args->flags["interpreters"] = "--interpreter"; }) args->flags["interpreters"] = "--interpreter";
    return option;
}

// A library message about executor options (make_executor's JSON keys) in
// the words of the command line, for the keys flags maps to their flags
// ("kernel_name" -> "--kernel"): "option 'kernel_id' of executor jupyter
// needs 'gateway_url'" -> "--kernel-id needs --gateway"; "unknown option
// 'image' for executor local; valid options: ..." -> "--image is not for
// --executor local; its flags: ...; its options without a flag: ..."
// (option_words.cpp). every (default: flags) is every option's flag, for the
// list of an executor's flags.
std::string in_flag_words(std::string text, const std::map<std::string, std::string>& flags,
                          const std::map<std::string, std::string>* every = nullptr);

// make(), its invalid_argument errors (the library's, about the options)
// said in flags' words (in_flag_words).
template <typename F>
auto in_flag_words_of(const std::map<std::string, std::string>& flags, F&& make,
                      const std::map<std::string, std::string>* every = nullptr) {
    try {
        return make();
    } catch (const error& e) {
        if (e.code() != errc::invalid_argument) throw;
        throw error(e.code(), in_flag_words(e.what(), flags, every));
    }
}

// Help text shared by the commands that take --token and --token-file.
inline constexpr const char* token_help =
    "The server's token (default $KERNEX_GATEWAY_TOKEN). Visible to other users in `ps`:\n"
    "prefer $KERNEX_GATEWAY_TOKEN or --token-file";
inline constexpr const char* token_file_help = "Read the server's token from this file (its first line)";

// Each adds a subcommand to app and returns its runner.
command_runner add_kernelspec_command(CLI::App& app);
command_runner add_run_command(CLI::App& app);
command_runner add_kernel_command(CLI::App& app);
command_runner add_exec_command(CLI::App& app);
command_runner add_mcp_command(CLI::App& app);
command_runner add_complete_command(CLI::App& app);  // kernel_requests.cpp
command_runner add_inspect_command(CLI::App& app);   // kernel_requests.cpp

// Adds `kernel interrupt` and `kernel shutdown` to the `kernel` command
// (kernel_requests.cpp). The runner returns their exit status when one of
// them was chosen, else nullopt.
std::function<std::optional<int>()> add_kernel_requests(CLI::App& kernel);

}  // namespace kernex::cli
