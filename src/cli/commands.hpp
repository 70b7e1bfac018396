// Each kernex subcommand registers itself on the CLI11 app and returns the
// function that runs it; main.cpp dispatches to the one the user chose.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace kernex::cli {

using command_runner = std::function<int()>;

// The text of file, or of stdin when file is "-". Throws
// kernex::error(not_found) when the file cannot be read.
std::string read_input(const std::string& file);

// Each adds a subcommand to app and returns its runner.
command_runner add_kernelspec_command(CLI::App& app);
command_runner add_run_command(CLI::App& app);
command_runner add_kernel_command(CLI::App& app);
command_runner add_exec_command(CLI::App& app);

}  // namespace kernex::cli
