// notebook: runs Jupyter notebooks (.ipynb, nbformat 4) headless, as
// nbclient and papermill do. kernex::notebook reads a notebook, checks the
// parts kernex touches (cells, their type, source, metadata, outputs) and
// writes it back in nbformat's own layout, keeping its nbformat minor
// version, cell ids and every field it does not touch. execute_notebook()
// runs the code cells in order in one kernel and records their outputs as
// nbclient does: streams, display_data, execute_result, error; consecutive
// streams of one name merged; clear_output (with and without wait) and
// update_display_data (by display_id, across cells) applied; execution_count
// and metadata.execution (the kernel's message dates, as nbclient records
// them) set; widget state saved in metadata.widgets. A failing cell, a timeout, a dead
// kernel or a stop request end the run with the notebook holding everything
// computed so far: the caller writes it whatever happened.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernex/kernel_client.hpp"
#include "kernex/kernel_manager.hpp"

namespace kernex {

class notebook {
public:
    // An empty nbformat 4.5 notebook.
    notebook();
    // Parses and checks a notebook. Throws kernex::error(invalid_argument)
    // saying what is wrong and where (not JSON, not nbformat 4, a cell
    // without a valid cell_type or source, ...).
    static notebook parse(std::string_view text, std::string_view origin = "notebook");
    // Reads and parses a file. Throws kernex::error(not_found) when it
    // cannot be read, then as parse().
    static notebook read(const std::filesystem::path& path);

    // The notebook as nbformat writes it: keys sorted, one-space indent,
    // multi-line text split into lists of lines, a final newline.
    std::string dump() const;
    // Writes dump() to path atomically: a new file beside it, then renamed
    // over it, so a symlink or anything else planted at path is replaced,
    // never followed or written through. Throws kernex::error(io_error).
    void write(const std::filesystem::path& path) const;

    // The whole document (sources and texts joined into strings). Code that
    // changes it keeps it valid nbformat 4.
    nlohmann::json& doc() noexcept { return m_doc; }
    const nlohmann::json& doc() const noexcept { return m_doc; }
    nlohmann::json& cells() { return m_doc["cells"]; }
    const nlohmann::json& cells() const { return m_doc.at("cells"); }
    int nbformat_minor() const;
    // metadata.kernelspec.name, else "" (no kernel named).
    std::string kernel_name() const;

    // Returns a new cell of type "code", "markdown" or "raw" with the given
    // source, and a fresh id when the notebook's minor version has ids (≥ 5).
    nlohmann::json new_cell(std::string_view cell_type, std::string source) const;

private:
    nlohmann::json m_doc;
};

// A file a notebook will be written to, its directory opened now: later
// writes go into that directory even if its path is changed meanwhile (code
// the notebook runs may write in it), with the same replace-never-follow
// rule as notebook::write. Use it to fix the destination before running.
class notebook_destination {
public:
    // Throws kernex::error(io_error) when the directory does not exist,
    // (invalid_argument) when path names a directory.
    explicit notebook_destination(const std::filesystem::path& path);
    notebook_destination(notebook_destination&&) noexcept;
    notebook_destination& operator=(notebook_destination&&) noexcept;
    ~notebook_destination();
    // Throws kernex::error(io_error).
    void write(const notebook& nb) const;
    const std::filesystem::path& path() const noexcept { return m_path; }

private:
    std::filesystem::path m_path;
    std::string m_name;
    int m_dir_fd = -1;
};

// The kind of cell ("code" or "markdown") a line of a percent-format script
// opens, or nullopt when the line is not a cell marker. A marker starts the
// line: "#", optional spaces, "%%", then the end of the line or a space and
// an optional title, as Jupytext, VS Code and Spyder write them ("# %%",
// "#%%", "# %% Load data"). "[markdown]" or "[md]" after the "%%" opens a
// markdown cell ("# %% [markdown]", "#%% Intro [md]"). "# %%timeit" is not a
// marker.
std::optional<std::string_view> percent_cell_marker(std::string_view line);

// Turns a percent-format script into a notebook: a cell starts at each
// percent_cell_marker line; a markdown marker starts a markdown cell
// whose lines lose their leading "# " (or "#"). Text before the first marker
// is a code cell unless blank. metadata.kernelspec comes from spec.
notebook notebook_from_percent_script(std::string_view text, const kernelspec& spec);

// Papermill's parameters: returns the source of an injected-parameters cell
// assigning each parameter (JSON values: null, bool, number, string, array,
// object) in the language named ("python", "r", "julia", "bash"; case does
// not matter). Throws kernex::error(unsupported) naming any other language,
// or a value the language cannot hold (bash: objects, nested arrays);
// (invalid_argument) for a name that is not an identifier.
std::string parameters_source(const nlohmann::json& parameters, std::string_view language);
// Inserts (or replaces) the cell tagged "injected-parameters": after the
// cell tagged "parameters", else first. Throws as parameters_source().
void inject_parameters(notebook& nb, const nlohmann::json& parameters, std::string_view language);

enum class notebook_status {
    ok,           // every cell ran (or failed where errors were allowed)
    cell_error,   // a cell failed and errors were not allowed: the run stopped there
    timeout,      // a cell ran over the timeout: interrupted (restarted if it would not stop)
    kernel_died,  // the kernel died during a cell
    interrupted,  // stop_requested() said so (e.g. Ctrl-C)
};
std::string_view to_string(notebook_status s) noexcept;

// Progress, reported before and after each code cell.
struct notebook_progress {
    std::size_t cell_index = 0;   // in the notebook's cells
    std::size_t code_cell = 0;    // 1-based among the code cells
    std::size_t code_cells = 0;   // code cells in the notebook
    bool finished = false;        // false: starting; true: done (status set)
    execution_status status = execution_status::ok;
};

struct notebook_options {
    // Per cell; a cell over it is interrupted, then the kernel restarted if
    // it stays busy (kernel_client's rule). nullopt: no limit.
    std::optional<std::chrono::milliseconds> timeout{};
    // nbclient's allow_errors: failing cells do not stop the run.
    bool allow_errors = false;
    // Cells with this tag are not run (their old outputs stay).
    std::string skip_tag = "skip-execution";
    // Cells with this tag may fail without stopping the run.
    std::string raises_tag = "raises-exception";
    // Asked after each cell; true ends the run (status interrupted).
    std::function<bool()> stop_requested{};
    // A stop requested here abandons the running cell at once (it may still
    // be running in the kernel: shut it down or restart it) and ends the run
    // (status interrupted): for a cell that ignores its interrupt.
    std::stop_token stop{};
    std::function<void(const notebook_progress&)> on_progress{};
    // Answers input_request; without it the kernel gets "".
    std::function<std::string(const input_request&)> on_input{};
    // Bytes of outputs a cell keeps (output_bytes: stream text, MIME data):
    // the first max_output_head of them (default 60 %) and the last ones,
    // a stderr stream "[… N bytes dropped …]" between them, so the
    // traceback at the end of a flood survives. The cell's comm messages
    // count against it too. 0: no limit.
    std::size_t max_output_bytes = std::size_t{256} << 20;
    std::optional<std::size_t> max_output_head{};
    // nbclient's store_widget_state: the state of the widgets the cells'
    // comm messages carry (ipywidgets: comm_open and comm_msg with a
    // "state") is written to metadata.widgets
    // ("application/vnd.jupyter.widget-state+json"), as nbclient writes it.
    bool store_widget_state = true;
};

struct notebook_result {
    notebook_status status = notebook_status::ok;
    std::size_t cells_executed = 0;
    std::optional<std::size_t> stopped_at{};  // index of the cell that ended the run
    // What happened, for people, in the words `kernex run` uses for a
    // script's cell: "Timeout: the code ran longer than 2 s and was
    // stopped", "Interrupted", kernel_client's note on a dead kernel, the
    // error ("ZeroDivisionError: division by zero"); "" when all went well.
    std::string message;
};

// The words for a cell that ran over timeout: "Timeout: the code ran longer
// than 2 s and was stopped" (and "(the kernel was restarted: its state is
// lost)" when it was), as kernex run and the executors say it.
std::string notebook_timeout_message(std::chrono::milliseconds timeout, bool restarted);

// Runs nb's code cells in kc's kernel, in order, writing their outputs into
// nb as it goes (so nb holds what was computed whenever it returns or
// throws). Sets metadata.language_info from the kernel. Outcomes of the
// code are in the result; throws kernex::error only when the kernel cannot
// be talked to at all (transport failure).
notebook_result execute_notebook(notebook& nb, kernel_client& kc, const notebook_options& options = {});

// Starts the kernel (kernel.kernel_name, else the notebook's
// metadata.kernelspec.name, else python3; kernel.cwd, else the current
// directory), runs nb in it and shuts it down. Throws kernex::error as
// kernel_manager::start, and (not_found) listing the installed kernels when
// the notebook's kernel is not one of them.
notebook_result execute_notebook(notebook& nb, const notebook_options& options = {},
                                 kernel_options kernel = {.kernel_name = ""});

}  // namespace kernex
