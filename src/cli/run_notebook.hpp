// `kernex run` on a notebook: `kernex run analysis.ipynb` executes it and
// writes the executed notebook; `kernex run script.py -o out.ipynb` turns a
// percent-format script into one. A thin layer over kernex/notebook.hpp.
#pragma once

#include <functional>
#include <optional>

#include <CLI/CLI.hpp>

namespace kernex::cli {

// Adds the notebook-only options (--inplace, -p, --parameters-file, -q) to
// the `run` subcommand. The returned function, called after parsing, runs
// the notebook and returns the exit status when the run is a notebook run
// (FILE ends in .ipynb, or -o does), else nullopt (a script run). It reads
// the options it shares with script runs (--kernel, --timeout, --continue,
// -o, --gateway, --docker-image, --sandbox, --inherit-env) from `run` by name.
std::function<std::optional<int>()> add_notebook_run_options(CLI::App& run);

}  // namespace kernex::cli
