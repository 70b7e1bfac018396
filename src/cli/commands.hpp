// Each kernex subcommand registers itself on the CLI11 app and returns the
// function that runs it; main.cpp dispatches to the one the user chose.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace kernex::cli {

using command_runner = std::function<int()>;

// Each adds a subcommand to app and returns its runner.
command_runner add_kernelspec_command(CLI::App& app);
command_runner add_run_command(CLI::App& app);
command_runner add_kernel_command(CLI::App& app);
command_runner add_exec_command(CLI::App& app);

}  // namespace kernex::cli
