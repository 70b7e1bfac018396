// `kernex run` on a notebook: `kernex run analysis.ipynb` executes it and
// writes the executed notebook; `kernex run script.py -o out.ipynb` turns a
// percent-format script into one. A thin layer over kernex/notebook.hpp.
#pragma once

#include <functional>
#include <cstddef>
#include <optional>

#include <CLI/CLI.hpp>

#include "kernex/kernel_manager.hpp"

namespace kernex::cli {

// What a notebook run takes from the options it shares with script runs,
// as `kernex run` parsed them.
struct notebook_run_settings {
    // The kernel to start, from every kernel flag (--gateway, --token-file,
    // --docker-image and the container flags, --sandbox, --cwd, ...);
    // kernel_name empty unless --kernel was given. Called once, after the
    // notebook-only options are checked.
    std::function<kernel_options()> new_kernel;
    double timeout = 0;  // --timeout, seconds per cell; 0: none
    bool keep_going = false;  // --continue
    std::size_t max_output_bytes = std::size_t{256} << 20;  // per cell
    std::optional<std::size_t> max_output_head;           // unset: 60 % of it
};

// Adds the notebook-only options (--inplace, -p, --parameters-file, -q) to
// the `run` subcommand. The returned function, called after parsing, runs
// the notebook and returns the exit status when the run is a notebook run
// (FILE ends in .ipynb, or -o does), else nullopt (a script run).
std::function<std::optional<int>(const notebook_run_settings&)> add_notebook_run_options(CLI::App& run);

}  // namespace kernex::cli
