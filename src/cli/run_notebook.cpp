// `kernex run analysis.ipynb`: executes a notebook as nbclient / papermill
// do and writes the executed notebook, whatever happened (a failing cell, a
// timeout, a dead kernel, Ctrl-C): nothing already computed is lost.
#include "cli/run_notebook.hpp"

#include <unistd.h>

#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "cli/commands.hpp"
#include "cli/signal_forwarding.hpp"
#include "kernex/error.hpp"
#include "kernex/kernel_manager.hpp"
#include "kernex/kernelspec.hpp"
#include "kernex/notebook.hpp"
#include "kernex/output_files.hpp"

namespace kernex::cli {

namespace {

struct notebook_args {
    bool inplace = false;
    bool quiet = false;
    std::vector<std::string> parameters;   // NAME VALUE pairs, flattened
    std::string parameters_file;
};

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// An option `kernex run` shares with script runs, by name; a missing one
// (renamed there) reads as not given.
CLI::Option* shared_option(CLI::App& run, const std::string& name) {
    try {
        return run.get_option(name);
    } catch (const CLI::OptionNotFound&) {
        return nullptr;
    }
}
bool given(CLI::App& run, const std::string& name) {
    auto* o = shared_option(run, name);
    return o && o->count() > 0;
}
std::string value(CLI::App& run, const std::string& name) {
    auto* o = shared_option(run, name);
    return o && o->count() > 0 ? o->as<std::string>() : std::string();
}

// -p NAME VALUE: VALUE is JSON when it parses as JSON, else a string.
json parameters(const notebook_args& a) {
    json p = json::object();
    if (!a.parameters_file.empty()) {
        try {
            p = json::parse(read_input(a.parameters_file));
        } catch (const json::exception& e) {
            throw error(errc::invalid_argument, "--parameters-file " + a.parameters_file + " is not JSON: " + e.what());
        }
        if (!p.is_object())
            throw error(errc::invalid_argument, "--parameters-file " + a.parameters_file + " must hold a JSON object");
    }
    for (std::size_t i = 0; i + 1 < a.parameters.size(); i += 2) {
        const auto& text = a.parameters[i + 1];
        json v = json::parse(text, nullptr, false);
        p[a.parameters[i]] = v.is_discarded() ? json(text) : v;
    }
    return p;
}

// One line on stderr, redrawn in place: "cell 12/40 · 00:31 · running".
class progress_line {
public:
    explicit progress_line(bool enabled) : m_enabled(enabled), m_start(std::chrono::steady_clock::now()) {
        if (m_enabled)
            m_thread = std::jthread([this](std::stop_token stop) {
                std::unique_lock lock(m_mutex);
                while (!stop.stop_requested()) {
                    m_wake.wait_for(lock, stop, std::chrono::seconds(1), [] { return false; });
                    if (!stop.stop_requested()) draw();
                }
            });
    }
    ~progress_line() { finish(); }
    // Stops redrawing and clears the line.
    void finish() {
        if (!m_enabled) return;
        m_enabled = false;
        m_thread.request_stop();
        m_thread.join();
        std::fputs("\r\x1b[K", stderr);
        std::fflush(stderr);
    }
    void update(const notebook_progress& p) {
        if (!m_enabled) return;
        std::lock_guard lock(m_mutex);
        m_cell = p.code_cell;
        m_cells = p.code_cells;
        m_state = p.finished ? std::string(to_string(p.status)) : "running";
        draw();
    }

private:
    void draw() {
        auto s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - m_start).count();
        std::fprintf(stderr, "\r\x1b[Kkernex: cell %zu/%zu \xc2\xb7 %02lld:%02lld \xc2\xb7 %s", m_cell, m_cells,
                     static_cast<long long>(s / 60), static_cast<long long>(s % 60), m_state.c_str());
        std::fflush(stderr);
    }

    bool m_enabled;
    std::chrono::steady_clock::time_point m_start;
    std::mutex m_mutex;
    std::condition_variable_any m_wake;
    std::size_t m_cell = 0, m_cells = 0;
    std::string m_state = "starting";
    std::jthread m_thread;
};

// Where a cell is, for messages: "a.ipynb, cell 5 (code cell 3)", 1-based.
std::string cell_place(const std::filesystem::path& file, const notebook& nb, std::size_t index) {
    std::size_t code = 0;
    for (std::size_t i = 0; i <= index && i < nb.cells().size(); ++i) code += nb.cells()[i]["cell_type"] == "code";
    return file.string() + ", cell " + std::to_string(index + 1) + " (code cell " + std::to_string(code) + ")";
}

// The failed cell's traceback, each line kernex's: "kernex:   ...".
void print_cell_error(const notebook& nb, std::size_t index) {
    for (const auto& out : nb.cells()[index]["outputs"]) {
        if (out["output_type"] != "error") continue;
        for (const auto& entry : out["traceback"]) {
            std::istringstream lines(strip_ansi(entry.get<std::string>()));
            for (std::string line; std::getline(lines, line);) std::cerr << "kernex:   " << line << "\n";
        }
    }
}

int run_notebook(CLI::App& run, const notebook_args& a, const notebook_run_settings& shared) {
    auto files = run.get_option("files")->as<std::vector<std::string>>();
    if (files.size() != 1) throw error(errc::invalid_argument, "kernex run: give one notebook (or one script with -o NAME.ipynb)");
    if (given(run, "--existing") || given(run, "--json"))
        throw error(errc::invalid_argument, "--existing and --json do not apply to notebook runs");
    if (shared.max_output_head && *shared.max_output_head > shared.max_output_bytes)
        throw error(errc::invalid_argument, "--max-output-head " + std::to_string(*shared.max_output_head) +
                                                " is larger than --max-output-bytes " +
                                                std::to_string(shared.max_output_bytes));
    const std::filesystem::path input = files[0];
    const bool from_script = !ends_with(input.string(), ".ipynb");
    // Every kernel flag, as for scripts (--kernel only when given).
    kernel_options ko = shared.new_kernel();
    const bool kernel_given = !ko.kernel_name.empty();

    // The notebook and its kernel.
    std::optional<notebook> nb;
    std::string kernel_name = ko.kernel_name;
    if (from_script) {
        if (a.inplace) throw error(errc::invalid_argument, "--inplace needs a notebook, not a script");
        if (kernel_name.empty()) kernel_name = "python3";
        nb = notebook_from_percent_script(read_input(input.string()), find_kernelspec(kernel_name));
    } else {
        nb = notebook::read(input);
        if (kernel_name.empty()) kernel_name = nb->kernel_name();
        if (kernel_name.empty()) kernel_name = "python3";
    }
    auto params = parameters(a);

    std::filesystem::path out;
    if (a.inplace) {
        if (given(run, "--output-dir")) throw error(errc::invalid_argument, "-o and --inplace cannot be combined");
        out = input;
    } else if (given(run, "--output-dir")) {
        out = value(run, "--output-dir");
    } else {
        out = input.parent_path() / (input.stem().string() + ".out.ipynb");
    }
    // Fixed now, before any code runs in that directory.
    notebook_destination destination(out);

    ko.kernel_name = kernel_name;
    if (!ko.gateway) {
        try {
            ko.spec = find_kernelspec(kernel_name);
        } catch (const error& e) {
            if (e.code() != errc::not_found || from_script || kernel_given) throw;
            throw error(errc::not_found, input.string() + " names kernel '" + kernel_name +
                                             "' (metadata.kernelspec.name); choose an installed one with --kernel. " +
                                             e.what());
        }
    }
    // Relative paths in the notebook are the notebook's, as with nbconvert,
    // for a local kernel unless --cwd says otherwise (a container's work
    // dir is --work-dir's, else a temporary one, as for scripts).
    if (!ko.cwd && !ko.gateway && !ko.docker) ko.cwd = std::filesystem::absolute(input).parent_path();

    notebook_options no;
    if (shared.timeout > 0) no.timeout = std::chrono::milliseconds(std::llround(shared.timeout * 1000));
    no.allow_errors = shared.keep_going;
    no.max_output_bytes = shared.max_output_bytes;
    no.max_output_head = shared.max_output_head;

    auto km = kernel_manager::start(ko);
    auto& kc = km.client();
    if (!params.empty()) {
        auto info = kc.kernel_info();
        std::string language = ko.spec ? ko.spec->language : std::string();
        if (info.contains("language_info") && info["language_info"].contains("name") &&
            info["language_info"]["name"].is_string())
            language = info["language_info"]["name"].get<std::string>();
        inject_parameters(*nb, params, language);
    }

    // Ctrl-C interrupts the running cell; the run stops after it and the
    // notebook is written. As for scripts, a second Ctrl-C (or the cell
    // still running 3 s later) abandons the cell, as SIGTERM and SIGHUP do at
    // once: a cell that ignores its interrupt cannot hold the run, and the
    // kernel is shut down below.
    std::stop_source abandon;
    signal_forwarding forwarding([&](int) { km.interrupt(); },
                                 escalation{.grace = std::chrono::seconds(3), .give_up = [&] { abandon.request_stop(); }});
    no.stop_requested = [&] { return forwarding.received() != 0; };
    no.stop = abandon.get_token();
    progress_line progress(!a.quiet && ::isatty(STDERR_FILENO));
    no.on_progress = [&](const notebook_progress& p) { progress.update(p); };

    notebook_result r;
    try {
        r = execute_notebook(*nb, kc, no);
    } catch (...) {
        progress.finish();
        destination.write(*nb);  // what was computed before the failure
        throw;
    }
    progress.finish();
    destination.write(*nb);
    km.shutdown();

    // The words kernex run says for a script's cell, the place a notebook's.
    if (r.stopped_at) {
        if (r.status == notebook_status::cell_error) print_cell_error(*nb, *r.stopped_at);
        std::cerr << "kernex: " << cell_place(input, *nb, *r.stopped_at) << ": " << r.message << "\n";
    } else if (r.status != notebook_status::ok) {
        std::cerr << "kernex: " << r.message << "\n";
    }
    if (!a.quiet) std::cerr << "kernex: wrote " << out.string() << "\n";
    switch (r.status) {
    case notebook_status::ok: return 0;
    case notebook_status::cell_error: return 1;
    case notebook_status::kernel_died: return 3;
    case notebook_status::timeout: return 124;
    case notebook_status::interrupted: return 130;
    }
    return 1;
}

}  // namespace

std::function<std::optional<int>(const notebook_run_settings&)> add_notebook_run_options(CLI::App& run) {
    auto a = std::make_shared<notebook_args>();
    run.add_flag("--inplace", a->inplace, "Notebook runs: write the executed notebook over the input");
    run.add_option("-p,--parameter", a->parameters,
                   "Notebook runs: NAME VALUE, a papermill parameter (VALUE as JSON, else a string);\n"
                   "repeatable. Injected in a cell tagged injected-parameters after the cell tagged parameters")
        ->type_size(2)
        ->allow_extra_args(false)
        ->type_name("NAME VALUE");
    run.add_option("--parameters-file", a->parameters_file, "Notebook runs: parameters as a JSON object");
    run.add_flag("-q,--quiet", a->quiet,
                 "No cell headers and no summary on stderr; notebook runs: no progress line, no 'wrote' line");
    CLI::App* app = &run;
    return [a, app](const notebook_run_settings& shared) -> std::optional<int> {
        auto files = app->get_option("files")->as<std::vector<std::string>>();
        bool notebook_run = (!files.empty() && ends_with(files[0], ".ipynb")) ||
                            (given(*app, "--output-dir") && ends_with(value(*app, "--output-dir"), ".ipynb"));
        if (!notebook_run) {
            if (a->inplace || !a->parameters.empty() || !a->parameters_file.empty())
                throw error(errc::invalid_argument,
                            "--inplace, -p and --parameters-file apply to notebooks (FILE.ipynb, or -o FILE.ipynb)");
            return std::nullopt;
        }
        return run_notebook(*app, *a, shared);
    };
}

}  // namespace kernex::cli
