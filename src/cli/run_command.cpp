// `kernex run`: the cells of one or more files, in order, in ONE kernel
// session. Cells are separated by percent-format markers ("# %%", "#%%";
// "# %% [markdown]" cells are skipped); outputs print as they stream; images and HTML are saved.
// Everything the user gave is checked before anything starts; signals are
// handled before anything is spawned; every cell's result says what
// happened to it (and to the kernel's state).
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <sstream>
#include <stop_token>

#include "cli/commands.hpp"
#include "cli/container_flags.hpp"
#include "cli/run_notebook.hpp"
#include "cli/signal_forwarding.hpp"
#include "cli/terminal_text.hpp"
#include "kernex/error.hpp"
#include "kernex/kernel_manager.hpp"
#include "kernex/notebook.hpp"
#include "kernex/output_files.hpp"
#include "kernex/remote_kernel.hpp"

namespace kernex::cli {

namespace {

struct run_args {
    std::string kernel = "python3";
    std::string existing;
    std::string gateway;        // else KERNEX_GATEWAY_URL
    std::string token;          // else KERNEX_GATEWAY_TOKEN; never printed
    std::string token_file;
    std::string gateway_ca;
    std::string docker_image;   // run the kernel in a container of this image
    std::string work_dir;       // with docker_image: bound at /workspace
    container_flags container;  // with docker_image
    std::string cwd;            // a local kernel's working directory
    std::optional<double> ready_timeout;  // unset: 60 s to start, 30 s for --existing
    double timeout = 0;
    std::string output_dir = ".";
    bool keep_going = false;
    bool json_lines = false;
    colour_mode colour = colour_mode::automatic;
    bool quiet = false;         // no cell headers, no summary
    bool sandbox = false;       // local kernel in the bubblewrap sandbox
    bool inherit_env = false;   // local kernel gets our whole environment
    std::vector<std::string> env;  // --env NAME[=VALUE]
    std::size_t max_output_bytes = std::size_t{256} << 20;  // kept per cell, with --json
    std::optional<std::size_t> max_output_head;             // of those, the first; unset: 60 %
    bool save_full_output = false;  // all the output in a new file of output_dir
    std::vector<std::string> files;
};

// A cell of a file: its code and the line it starts on.
struct cell_text {
    std::string code;
    int line = 1;
};

// Splits text into code cells at percent-format markers ("# %%", "#%%",
// "# %% title": percent_cell_marker). Markdown cells ("# %% [markdown]")
// are skipped, not counted. Text before the first marker is a cell when it
// holds more than blank lines.
std::vector<cell_text> split_cells(const std::string& text) {
    std::vector<cell_text> cells;
    std::string current;
    int line_no = 0, first = 1;
    bool markdown = false;
    auto flush = [&] {
        bool blank = current.find_first_not_of(" \t\r\n") == std::string::npos;
        if (!blank && !markdown) cells.push_back({current, first});
        current.clear();
    };
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        ++line_no;
        if (auto marker = percent_cell_marker(line)) {
            flush();
            markdown = *marker == "markdown";
            first = line_no + 1;
            continue;
        }
        current += line;
        current += '\n';
    }
    flush();
    return cells;
}

// The bundle without the types kernex saves to files (HTML is no text form
// for a terminal).
json without_file_types(const json& data) {
    json rest = json::object();
    for (const auto& [mime, value] : data.items())
        if (!has_file_output(json{{mime, nullptr}})) rest[mime] = value;
    return rest;
}

std::string mime_types(const json& data) {
    std::string names;
    for (const auto& [mime, value] : data.items()) names += (names.empty() ? "" : ", ") + mime;
    return names;
}

// A cell's outputs in nbformat 4's shape (what a notebook's code cell holds,
// valid against its schema), tracebacks without ANSI colours: clear_output applied (wait: at the next
// output), update_display_data applied to this cell's display of the same
// display_id (one of an earlier cell is not in this list).
json notebook_outputs(const std::vector<output>& outs) {
    json list = json::array();
    std::map<std::string, std::size_t> displays;  // display_id -> index in list
    bool clear_pending = false;
    auto add = [&](json o) {
        if (clear_pending) {
            list = json::array();
            displays.clear();
            clear_pending = false;
        }
        list.push_back(std::move(o));
    };
    auto bundle = [](const json& j) { return j.is_object() ? j : json::object(); };
    for (const auto& out : outs) {
        std::visit(
            [&](const auto& v) {
                using T = std::decay_t<decltype(v)>;
                if constexpr (std::is_same_v<T, outputs::stream>) {
                    add({{"output_type", "stream"}, {"name", v.name}, {"text", v.text}});
                } else if constexpr (std::is_same_v<T, outputs::display_data>) {
                    add({{"output_type", "display_data"}, {"data", bundle(v.data)}, {"metadata", bundle(v.metadata)}});
                    if (v.transient.is_object())
                        if (auto id = v.transient.find("display_id"); id != v.transient.end() && id->is_string())
                            displays[id->template get<std::string>()] = list.size() - 1;
                } else if constexpr (std::is_same_v<T, outputs::update_display_data>) {
                    if (auto it = displays.find(v.display_id); it != displays.end()) {
                        list[it->second]["data"] = bundle(v.data);
                        list[it->second]["metadata"] = bundle(v.metadata);
                    }
                } else if constexpr (std::is_same_v<T, outputs::execute_result>) {
                    add({{"output_type", "execute_result"},
                         {"execution_count", v.execution_count > 0 ? json(v.execution_count) : json(nullptr)},
                         {"data", bundle(v.data)},
                         {"metadata", bundle(v.metadata)}});
                } else if constexpr (std::is_same_v<T, outputs::error>) {
                    // Without colours: a program reads these, not a terminal.
                    json traceback = json::array();
                    for (const auto& line : v.traceback) traceback.push_back(strip_ansi(line));
                    add({{"output_type", "error"}, {"ename", v.ename}, {"evalue", v.evalue}, {"traceback", traceback}});
                } else {
                    if (v.wait) clear_pending = true;
                    else {
                        list = json::array();
                        displays.clear();
                    }
                }
            },
            out);
    }
    return list;
}

// A cell's outputs for --json, within --max-output-bytes: the first ones
// (--max-output-head, default 60 % of the cap) and the last ones, a stderr
// notice "[… N bytes dropped …]" between them, so the traceback at the end
// of a flood survives. A stream that crosses a boundary keeps the part that
// fits, cut between UTF-8 characters.
class kept_outputs {
public:
    void begin(std::size_t max, std::size_t head) {
        m_head_room = std::min(head, max);
        m_tail_room = max - m_head_room;
        m_holding = false;
        m_list.clear();
        m_tail.clear();
        m_tail_bytes = 0;
        m_dropped = 0;
    }

    void add(const output& o) {
        std::size_t size = output_bytes(o);
        if (!m_holding) {
            if (size <= m_head_room) {
                m_head_room -= size;
                m_list.push_back(o);
                return;
            }
            m_holding = true;
            if (auto* s = std::get_if<outputs::stream>(&o)) {
                const std::size_t cut = char_boundary(s->text, m_head_room, false);
                if (cut > 0) m_list.push_back(outputs::stream{s->name, s->text.substr(0, cut)});
                m_tail.push_back(outputs::stream{s->name, s->text.substr(cut)});
                m_tail_bytes += s->text.size() - cut;
                trim();
                return;
            }
        }
        m_tail.push_back(o);
        m_tail_bytes += size;
        trim();
    }

    // The outputs kept, in order, the notice where some were dropped (and
    // after the last ones, where all of them are: full, when kept).
    std::vector<output> take(const full_output_file* full) {
        if (m_dropped > 0)
            m_list.push_back(outputs::stream{"stderr", "[\u2026 " + std::to_string(m_dropped) + " bytes dropped \u2026]\n"});
        for (auto& o : m_tail) m_list.push_back(std::move(o));
        m_tail.clear();
        if (m_dropped > 0 && full)
            m_list.push_back(outputs::stream{"stderr", "[saved the full output to " + full->path().string() + "]\n"});
        return std::move(m_list);
    }
    std::uint64_t dropped() const { return m_dropped; }

private:
    // Where a cut near at falls between characters: back (a head's end) or on (a tail's start).
    static std::size_t char_boundary(const std::string& text, std::size_t at, bool forward) {
        auto inside = [&](std::size_t i) { return i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80; };
        if (forward)
            while (inside(at)) ++at;
        else
            while (at > 0 && inside(at)) --at;
        return std::min(at, text.size());
    }
    void trim() {
        while (m_tail_bytes > m_tail_room && !m_tail.empty()) {
            const std::size_t over = m_tail_bytes - m_tail_room;
            auto* s = std::get_if<outputs::stream>(&m_tail.front());
            const std::size_t size = output_bytes(m_tail.front());
            if (s && over < size) {
                const std::size_t cut = char_boundary(s->text, over, true);
                s->text.erase(0, cut);
                m_tail_bytes -= cut;
                m_dropped += cut;
                if (!s->text.empty()) break;
            } else {
                m_tail_bytes -= size;
                m_dropped += size;
            }
            m_tail.pop_front();
        }
    }

    std::size_t m_head_room = 0, m_tail_room = 0, m_tail_bytes = 0;
    bool m_holding = false;
    std::vector<output> m_list;
    std::deque<output> m_tail;
    std::uint64_t m_dropped = 0;
};

// One --json record: a line, bytes that are not UTF-8 replaced.
std::string json_line(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"; }

// Where a cell is, for messages: "a.py, cell 3 (line 41)".
struct cell_place {
    std::string file;
    std::size_t cell = 0;
    int line = 0;
    std::string text() const {
        return (file == "-" ? std::string("stdin") : file) + ", cell " + std::to_string(cell) + " (line " +
               std::to_string(line) + ")";
    }
    // "a.py cell 3, line 41": where a line of a cell is.
    std::string line_text() const {
        return (file == "-" ? std::string("stdin") : file) + " cell " + std::to_string(cell) + ", line " +
               std::to_string(line);
    }
};

// Where a traceback's innermost frame in a cell of this run is, in the
// files: the kernel says "Cell In[7], line 2" (IPython >= 8.6) or "Input In
// [7], in <cell line: 2>" (8.0 to 8.5); cells maps execution counts to
// where the cells are. nullopt when no frame names one of them.
std::optional<cell_place> error_place(const outputs::error& e, const std::map<int, cell_place>& cells) {
    static const std::regex frame(R"((?:Cell|Input) In ?\[(\d+)\], (?:line (\d+)|in <cell line: (\d+)>))");
    std::optional<cell_place> found;
    for (const auto& line : e.traceback) {
        const std::string text = strip_ansi(line);
        for (std::sregex_iterator m(text.begin(), text.end(), frame), end; m != end; ++m) {
            const auto cell = cells.find(std::stoi((*m)[1].str()));
            if (cell == cells.end()) continue;
            found = cell->second;
            found->line += std::stoi((*m)[(*m)[2].matched ? 2 : 3].str()) - 1;
        }
    }
    return found;
}

// Prints outputs as they arrive and saves rich ones. Text for a terminal
// keeps only SGR colours of what the code sent (terminal_safe). A write to
// stdout that fails (the reader went away: `| head -1`) calls on_broken once.
class printer {
public:
    // full, when set, gets every output as text mode shows it (without
    // escape sequences), in --json mode too, and kernex's lines about cells.
    printer(const run_args& args, full_output_file* full, std::function<void()> on_broken)
        : m_args(args),
          m_full(full),
          m_out_style(args.colour, STDOUT_FILENO),
          m_err_style(args.colour, STDERR_FILENO),
          m_on_broken(std::move(on_broken)) {}

    void begin_cell(std::string stem) {
        m_stem = std::move(stem);
        m_saved.clear();
        m_count = 0;
        m_error.reset();
        m_kept.begin(m_args.max_output_bytes,
                     m_args.max_output_head.value_or(m_args.max_output_bytes / 10 * 6 + m_args.max_output_bytes % 10 * 6 / 10));
    }

    // The cell's outputs --json records (head and tail within --max-output-bytes).
    std::vector<output> take_kept() { return m_kept.take(m_full); }

    // The cell's error output, if any (outputs are not kept in the execution).
    const std::optional<outputs::error>& last_error() const { return m_error; }

    void on_output(const output& o) {
        if (m_args.json_lines) m_kept.add(o);
        if (auto* e = std::get_if<outputs::error>(&o)) m_error = *e;
        const json* data = nullptr;
        if (auto* d = std::get_if<outputs::display_data>(&o)) data = &d->data;
        if (auto* r = std::get_if<outputs::execute_result>(&o)) data = &r->data;
        if (auto* u = std::get_if<outputs::update_display_data>(&o)) data = &u->data;
        if (data && !data->is_object()) data = nullptr;
        auto* update = std::get_if<outputs::update_display_data>(&o);
        // An update replaces what a terminal showed long ago: a new line, said to be one.
        if (update) show("[display " + (update->display_id.empty() ? std::string("?") : update->display_id) + " updated]\n");
        if (data && has_file_output(*data)) {
            // <source>-cell<N>-<n>, as kernex exec's <source>-block<N>-<n>.
            const auto stem = m_stem + "-" + std::to_string(++m_count);
            // Its text form first (what a notebook shows a reader without
            // the rich one; an R value's, a DataFrame's), then where the rich
            // form went.
            if (auto text = text_form(without_file_types(*data))) show(*text + "\n");
            // The names save_output_files used (never an existing file's).
            for (auto& p : save_output_files(*data, m_args.output_dir, stem)) {
                m_saved.push_back(p.string());
                show(saved_output_line(p) + "\n");
            }
            return;
        }
        if (m_args.json_lines && !m_full) return;
        if (auto* s = std::get_if<outputs::stream>(&o)) {
            show(s->text, s->name == "stderr");
        } else if (data) {
            if (auto text = text_form(*data)) show(*text + "\n");
            else if (!data->empty()) note("kernex: a " + mime_types(*data) + " output has no text form; --json keeps it\n");
        } else if (auto* e = std::get_if<outputs::error>(&o)) {
            std::string text;
            for (const auto& line : e->traceback) text += (m_err_style.colours ? line : strip_ansi(line)) + "\n";
            if (e->traceback.empty()) text = e->ename + ": " + e->evalue + "\n";
            show(text, true);
        }
    }

    // A cell's output as text mode shows it: printed (not with --json), and
    // kept in the full output's file without escape sequences.
    void show(const std::string& text, bool on_stderr = false) {
        if (m_full) m_full->write(strip_ansi(text));
        if (m_args.json_lines) return;
        if (on_stderr) err(text);
        else out(text);
    }
    // kernex's line about a cell (a timeout, where an error came from): on stderr as the cell's output is shown.
    void note(const std::string& text) { show(text, true); }
    // Only to the full output's file (a cell's header there).
    void to_file(const std::string& text) {
        if (m_full) m_full->write(text);
    }

    // What kernex itself prints (prompts, JSON lines) to stdout.
    void out(const std::string& text) {
        if (m_broken) return;
        std::cout << m_out_style.text(text) << std::flush;
        if (!std::cout) {
            m_broken = true;
            m_on_broken();
        }
    }
    void err(const std::string& text) { std::cerr << m_err_style.text(text) << std::flush; }

    bool broken() const { return m_broken; }
    const stream_style& err_style() const { return m_err_style; }
    const std::vector<std::string>& saved() const { return m_saved; }

private:
    const run_args& m_args;
    full_output_file* m_full;
    stream_style m_out_style, m_err_style;
    std::function<void()> m_on_broken;
    bool m_broken = false;
    std::string m_stem;
    std::vector<std::string> m_saved;
    int m_count = 0;
    kept_outputs m_kept;
    std::optional<outputs::error> m_error;
};

// Reads a line from the terminal, not echoed when the kernel asks for a
// password (getpass()).
std::string read_answer(const input_request& r, printer& out) {
    out.out(r.prompt);
    termios saved{};
    const bool hide = r.password && ::tcgetattr(STDIN_FILENO, &saved) == 0;
    if (hide) {
        termios quiet = saved;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        quiet.c_lflag |= ECHONL;
        ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    std::string line;
    std::getline(std::cin, line);
    if (hide) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    return line;
}

// The files' cells, all read and checked before anything starts.
struct input_file {
    std::string name;
    std::string stem;  // for saved outputs' names
    std::vector<cell_text> cells;
};

std::vector<input_file> read_inputs(const run_args& args) {
    std::vector<input_file> inputs;
    int from_stdin = 0;
    for (const auto& file : args.files) {
        if (file == "-" && ++from_stdin > 1) throw error(errc::invalid_argument, "'-' (stdin) can be given only once");
        auto text = read_input(file);
        inputs.push_back({file, file == "-" ? "stdin" : std::filesystem::path(file).stem().string(), split_cells(text)});
    }
    // Two inputs with one stem (a/x.py, b/x.py) name their outputs apart: x, x-2.
    std::vector<std::string> bases;
    for (auto& input : inputs) {
        const auto same = std::count(bases.begin(), bases.end(), input.stem);
        bases.push_back(input.stem);
        if (same > 0) input.stem += "-" + std::to_string(same + 1);
    }
    return inputs;
}

// What scripts and notebooks (run_notebook.cpp) share, checked before either starts.
void check_kernel_arguments(const run_args& args) {
    check_seconds("--timeout", args.timeout, "no limit");
    if (args.ready_timeout) check_seconds("--ready-timeout", *args.ready_timeout);
    if (!args.cwd.empty() && !std::filesystem::is_directory(args.cwd))
        throw error(errc::invalid_argument, "--cwd " + args.cwd + " is not a directory: make it first");
}

void check_arguments(const run_args& args) {
    if (args.max_output_head && *args.max_output_head > args.max_output_bytes)
        throw error(errc::invalid_argument, "--max-output-head " + std::to_string(*args.max_output_head) +
                                                " is larger than --max-output-bytes " +
                                                std::to_string(args.max_output_bytes));
    std::error_code ec;
    auto st = std::filesystem::status(args.output_dir, ec);
    if (!ec && std::filesystem::exists(st) && !std::filesystem::is_directory(st))
        throw error(errc::invalid_argument, "--output-dir " + args.output_dir + " is not a directory");
}

// A library's own words (std::filesystem, nlohmann) made into a message
// that names the cell.
[[noreturn]] void fail_in(const cell_place& at, const std::exception& e) {
    if (auto* k = dynamic_cast<const error*>(&e)) throw error(k->code(), at.text() + ": " + k->what());
    if (auto* f = dynamic_cast<const std::filesystem::filesystem_error*>(&e))
        throw error(errc::io_error, at.text() + ": " + f->path1().string() + ": " + f->code().message());
    throw error(errc::io_error, at.text() + ": " + e.what());
}

// The server of --gateway (else $KERNEX_GATEWAY_URL) with the token of
// --token, --token-file or $KERNEX_GATEWAY_TOKEN and --gateway-ca; nullopt
// for a local kernel.
std::optional<gateway_options> run_gateway(const run_args& args) {
    std::string token = args.token;
    if (!args.token_file.empty()) token = read_token_file(args.token_file);
    auto gateway = gateway_options::from_arguments(args.gateway, token);
    if (gateway && !args.gateway_ca.empty()) gateway->ca_file = args.gateway_ca;
    return gateway;
}

// The kernel a run starts, scripts and notebooks alike: what --kernel,
// --gateway, --cwd, --ready-timeout, --sandbox, --inherit-env,
// --docker-image, --work-dir and the container flags say.
kernel_options new_kernel_options(const run_args& args, const std::optional<gateway_options>& gateway) {
    kernel_options ko;
    ko.kernel_name = args.kernel;
    ko.gateway = gateway;
    ko.inherit_env = args.inherit_env;
    apply_env_flag(args.env, ko);
    if (args.ready_timeout) ko.ready_timeout = milliseconds_of(*args.ready_timeout);
    if (!args.cwd.empty()) {
        if (gateway) throw error(errc::invalid_argument, "--cwd is for a local kernel; a --gateway kernel runs "
                                                         "where the server puts it");
        ko.cwd = std::filesystem::absolute(args.cwd);
    }
    if (args.sandbox) ko.sandbox.emplace();
    if (!args.docker_image.empty()) {
        if (gateway) throw error(errc::invalid_argument, "--docker-image and --gateway cannot be combined");
        ko.docker.emplace();
        ko.docker->image = args.docker_image;
        if (!args.work_dir.empty()) ko.docker->work_dir = args.work_dir;
        apply_container_flags(args.container, *ko.docker);
    }
    return ko;
}

int run(const run_args& args) {
    // Signals first: nothing may be spawned before kernex can clean up after it.
    std::stop_source abandon;  // stops waiting for the running cell
    std::mutex interrupter_mutex;
    std::function<void()> interrupter;  // set once there is a kernel
    auto interrupt = [&] {
        std::function<void()> f;
        {
            std::lock_guard lock(interrupter_mutex);
            f = interrupter;
        }
        if (f) f();
    };
    // Ctrl-C interrupts the running cell and the run stops after it; a
    // second Ctrl-C, or the cell still running 3 s later, abandons it, as
    // SIGTERM and SIGHUP do at once (the kernel is interrupted all the
    // same). kernex then shuts down the kernel it started instead of dying
    // and leaving it (and its connection file) behind.
    signal_forwarding forwarding([&](int) { interrupt(); },
                                 escalation{.grace = std::chrono::seconds(3), .give_up = [&] { abandon.request_stop(); }});

    check_arguments(args);
    const auto inputs = read_inputs(args);
    auto gateway = run_gateway(args);

    std::optional<kernel_manager> km;
    std::optional<kernel_client> own_client;
    std::optional<remote_kernel> attached;
    kernel_client* kc = nullptr;
    std::filesystem::path existing_file;
    if (gateway && !args.existing.empty() && !std::filesystem::exists(args.existing)) {
        // A kernel id on the server: used, not deleted at the end.
        attached.emplace(args.ready_timeout
                             ? remote_kernel::attach(*gateway, args.existing, false, milliseconds_of(*args.ready_timeout))
                             : remote_kernel::attach(*gateway, args.existing));
        kc = &attached->client();
    } else if (!args.existing.empty()) {
        existing_file = find_connection_file(args.existing);  // a bare kernel-ID.json: the runtime dir's
        own_client.emplace(kernel_client::from_connection_file(existing_file));
        own_client->wait_for_ready(args.ready_timeout ? milliseconds_of(*args.ready_timeout) : std::chrono::seconds(30));
        kc = &*own_client;
    } else {
        km.emplace(kernel_manager::start(new_kernel_options(args, gateway)));
        kc = &km->client();
    }
    {
        std::lock_guard lock(interrupter_mutex);
        if (km) interrupter = [&] { km->interrupt(); };
        else if (attached) interrupter = [&] { attached->interrupt(); };
        else interrupter = [&] { kernel_client::from_connection_file(existing_file).interrupt_request(std::chrono::seconds(2)); };
    }
    if (forwarding.received()) return 130;  // a signal while the kernel started: run nothing

    // --save-full-output: made now, before any cell runs (a bad --output-dir is said before any runs).
    std::optional<full_output_file> full;
    if (args.save_full_output) full.emplace(std::filesystem::absolute(args.output_dir));
    printer out(args, full ? &*full : nullptr, [&] {
        // Nobody reads any more: stop the cell and the run.
        try {
            interrupt();
        } catch (...) {
        }
        abandon.request_stop();
    });
    int status = 0;
    // Where am I: on a terminal a dim header per cell and a summary at the
    // end; elsewhere only the summary of a run that did not all go well.
    const bool terminal = out.err_style().terminal && !args.quiet && !args.json_lines;
    std::size_t all_cells = 0;
    for (const auto& input : inputs) all_cells += input.cells.size();
    std::vector<std::pair<std::string, std::string>> ran;  // status, "a.py cell 3"
    const auto started = std::chrono::steady_clock::now();
    auto summary = [&] {
        if (full) {
            if (!full->error().empty())
                out.err("kernex: the full output's file " + full->path().string() + " is incomplete: " + full->error() +
                        "\n");
            if (!args.json_lines) out.out("[saved the full output to " + full->path().string() + "]\n");
        }
        if (args.quiet || args.json_lines) return;
        const bool all_ok = ran.size() == all_cells &&
                            std::all_of(ran.begin(), ran.end(), [](const auto& r) { return r.first == "ok"; });
        if (all_ok && !terminal) return;
        std::string text = "kernex: " + std::to_string(all_cells) + (all_cells == 1 ? " cell: " : " cells: ");
        for (const char* kind : {"ok", "error", "timeout", "kernel_died", "aborted"}) {
            std::size_t n = 0;
            std::string first;
            for (const auto& [s, place] : ran)
                if (s == kind && n++ == 0) first = place;
            if (n == 0 && std::string_view(kind) != "ok") continue;
            text += (std::string_view(kind) == "ok" ? "" : ", ") + std::to_string(n) + " " + kind +
                    (std::string_view(kind) == "ok" ? "" : " (" + first + ")");
        }
        if (ran.size() < all_cells) text += ", " + std::to_string(all_cells - ran.size()) + " not run";
        char elapsed[32];
        std::snprintf(elapsed, sizeof elapsed, "; %.2f s\n",
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        out.err(text + elapsed);
    };
    // With --json every cell has a record: those after the one the run
    // stopped at (a failure, a signal) say "not_run".
    auto stop_at = [&](std::size_t input_index, std::size_t cell_index, int code) {
        summary();
        if (!args.json_lines || out.broken()) return code;
        for (std::size_t f = input_index; f < inputs.size(); ++f)
            for (std::size_t c = f == input_index ? cell_index : 0; c < inputs[f].cells.size(); ++c)
                out.out(json_line({{"file", inputs[f].name},
                                   {"cell", c + 1},
                                   {"line", inputs[f].cells[c].line},
                                   {"status", "not_run"}}));
        return out.broken() ? 141 : code;
    };
    std::map<int, cell_place> counted;  // execution count -> the cell that ran with it
    for (std::size_t f = 0; f < inputs.size(); ++f) {
        const auto& input = inputs[f];
        for (std::size_t i = 0; i < input.cells.size(); ++i) {
            if (forwarding.received()) return stop_at(f, i, 130);  // between cells: run no more
            const cell_place at{input.name, i + 1, input.cells[i].line};
            const std::string shown = input.name == "-" ? "stdin" : input.name;
            const std::string header = "\u2500\u2500 " + shown + " \u00b7 cell " + std::to_string(i + 1) + " of " +
                                       std::to_string(input.cells.size()) + " \u00b7 line " + std::to_string(at.line) +
                                       " \u2500\u2500";
            if (terminal) out.err("\x1b[2m" + header + "\x1b[0m\n");
            out.to_file(header + "\n");
            out.begin_cell(input.stem + "-cell" + std::to_string(i + 1));
            execute_options eo;
            if (args.timeout > 0) eo.timeout = milliseconds_of(args.timeout);
            eo.on_output = [&](const output& o) { out.on_output(o); };
            eo.stop = abandon.get_token();
            // Printed as they arrive; --json keeps them in the printer (head and tail).
            eo.max_output_bytes = 0;
            if (is_terminal(STDIN_FILENO) && input.name != "-")
                eo.on_input = [&](const input_request& r) { return read_answer(r, out); };
            // --json keeps the cell's comm messages too, up to --max-output-bytes.
            std::vector<comm_message> comms;
            std::size_t comm_bytes = 0, comms_dropped = 0;
            if (args.json_lines)
                eo.on_comm = [&](const comm_message& c) {
                    const auto n = output_bytes(c);
                    if (comm_bytes + n > args.max_output_bytes) return void(++comms_dropped);
                    comm_bytes += n;
                    comms.push_back(c);
                };
            execution r;
            try {
                r = kc->execute(input.cells[i].code, eo);
            } catch (const std::exception& e) {
                fail_in(at, e);
            }
            if (out.broken()) return 141;  // as if killed by SIGPIPE, and the kernel shut down
            if (r.execution_count > 0) counted[r.execution_count] = at;
            std::optional<cell_place> failed_at;
            if (const auto& e = out.last_error()) failed_at = error_place(*e, counted);
            if (args.json_lines) {
                json j{{"file", input.name},
                       {"cell", i + 1},
                       {"line", at.line},
                       {"status", to_string(r.status)},
                       {"execution_count", r.execution_count},
                       {"elapsed_ms", std::chrono::duration<double, std::milli>(r.elapsed).count()},
                       {"saved", out.saved()},
                       {"outputs", notebook_outputs(out.take_kept())}};
                if (!r.note.empty()) j["note"] = r.note;
                if (failed_at)
                    j["error_at"] = {{"file", failed_at->file}, {"cell", failed_at->cell}, {"line", failed_at->line}};
                if (full) j["full_output_file"] = full->path().string();
                if (r.restarted) j["restarted"] = true;
                if (r.state_lost) j["state_lost"] = true;
                if (r.outputs_lost) j["outputs_lost"] = true;
                if (r.input_unanswered) j["input_unanswered"] = true;
                if (r.abandoned) j["abandoned"] = true;
                for (const auto& comm : comms) j["comms"].push_back(comm.to_json());
                if (comms_dropped > 0) j["comms_dropped"] = comms_dropped;
                out.out(json_line(j));
                if (out.broken()) return 141;
            }
            // kernex's lines about the cell: printed in text mode, in the full output's file in both.
            // The kernel's "Cell In[7], line 2" in the files' words.
            if (failed_at) out.note("kernex: " + failed_at->line_text() + "\n");
            if (r.status == execution_status::timeout)  // the words of kernex exec
                out.note("kernex: " + at.text() + ": Timeout: the code ran longer than " + seconds_of(args.timeout) +
                         " and was stopped" + (r.restarted ? " (the kernel was restarted: its state is lost)" : "") +
                         "\n");
            else if (!r.note.empty()) out.note("kernex: " + at.text() + ": " + r.note + "\n");
            if (r.input_unanswered)
                out.note("kernex: " + at.text() +
                         ": the cell asked for input and got an empty answer: stdin is not a terminal (or is "
                         "the code), so nobody could answer it\n");
            ran.emplace_back(to_string(r.status), shown + " cell " + std::to_string(i + 1));
            if (r.status == execution_status::timeout) status = 124;
            else if (r.status != execution_status::ok && status == 0) status = 1;
            if (forwarding.received()) {
                out.note("kernex: " + at.text() + ": Interrupted\n");  // as kernex exec says it
                return stop_at(f, i + 1, 130);
            }
            if (r.status != execution_status::ok && !args.keep_going) return stop_at(f, i + 1, status);
        }
    }
    summary();
    return status;
}

}  // namespace

command_runner add_run_command(CLI::App& app) {
    auto args = std::make_shared<run_args>();
    auto* cmd = app.add_subcommand("run",
                                   "Run the cells of FILEs in order in one kernel session (state carries over).\n"
                                   "Cells are separated by lines starting with '# %%' or '#%%' ('# %% [markdown]' cells\n"
                                   "are skipped); '-' reads stdin.\n"
                                   "Every file is read and checked before anything starts.\n"
                                   "Ctrl-C interrupts the running cell and ends the run; a second Ctrl-C (or the cell\n"
                                   "still running 3 s later) abandons it; SIGTERM and SIGHUP end the run at once.\n"
                                   "A kernel kernex started is then shut down; see docs/cli.md.\n"
                                   "Exit status: 0 all ok, 1 a cell failed, 124 a cell timed out, 130 interrupted,\n"
                                   "141 stdout closed, 2 usage/setup error.");
    auto* kernel = cmd->add_option("-k,--kernel", args->kernel, "Kernelspec name (see `kernex kernelspec list`)")
                       ->capture_default_str();
    cmd->add_option("--existing", args->existing,
                    "Connection file of a running kernel to use instead: a path, or a name in the Jupyter runtime dir "
                    "(kernel-ID.json, as jupyter console --existing); with a gateway: a kernel id on the server")
        ->excludes(kernel);
    cmd->add_option("--gateway", args->gateway,
                    "Run the kernel on this Jupyter Server / gateway (http[s]://host:port[/base]; "
                    "default $KERNEX_GATEWAY_URL)");
    auto* token = cmd->add_option("--token", args->token, token_help);
    cmd->add_option("--token-file", args->token_file, token_file_help)->excludes(token);
    cmd->add_option("--gateway-ca", args->gateway_ca, "PEM file of the CAs to trust for an https gateway")
        ->check(CLI::ExistingFile);
    auto* image = cmd->add_option("--docker-image", args->docker_image,
                                  "Run the kernel in a Docker container of this image (present in the daemon at\n"
                                  "$DOCKER_HOST: never pulled; network none, only the work dir shared)");
    image->excludes("--existing");
    cmd->add_option("--work-dir", args->work_dir,
                    "With --docker-image: the directory bound at /workspace (default: a temporary one)")
        ->needs(image);
    add_container_flags(cmd, args->container, image);
    cmd->add_option("--cwd", args->cwd,
                    "The local kernel's working directory (an existing one; default: the current one).\n"
                    "Files given and --output-dir stay relative to where kernex runs")
        ->excludes("--existing")
        ->excludes(image);
    cmd->add_option_function<double>(
        "--ready-timeout", [args](double seconds) { args->ready_timeout = seconds; },
        "Seconds to wait for the kernel to be ready (default 60; 30 for --existing)");
    cmd->add_option("-t,--timeout", args->timeout,
                    "Seconds per cell, 0 to 31536000; a cell over it is interrupted (0: none, the default)");
    cmd->add_option("-o,--output-dir", args->output_dir,
                    "Where images and HTML outputs are saved (an existing name is never overwritten:\n"
                    "a new one is used and printed); a notebook run: the notebook written")
        ->capture_default_str();
    cmd->add_flag("--continue", args->keep_going, "Keep going after a failed cell");
    add_colour_option(cmd, args->colour);
    // A kernel kernex only connects to was confined (or not) by whoever started it.
    cmd->add_flag("--sandbox", args->sandbox, "Run the local kernel in a bubblewrap sandbox (no network, read-only system, ipc)")
        ->excludes("--existing");
    cmd->add_flag("--inherit-env", args->inherit_env, "The local kernel gets kernex's whole environment, not a clean one")
        ->excludes("--existing");
    add_env_flag(cmd, args->env);
    cmd->get_option("--env")->excludes("--existing");
    cmd->add_flag("--json", args->json_lines,
                  "Print one JSON object per cell instead of the outputs (outputs in nbformat's shape,\n"
                  "tracebacks without colours); cells not run after a failure: \"status\": \"not_run\"");
    cmd->add_option("--max-output-bytes", args->max_output_bytes,
                    "With --json and in notebook runs: bytes of outputs kept per cell, the first and the last\n"
                    "of them, with a stderr notice between: [\u2026 N bytes dropped \u2026] (text mode prints\n"
                    "everything as it arrives)")
        ->capture_default_str();
    cmd->add_option_function<std::size_t>(
        "--max-output-head", [args](std::size_t bytes) { args->max_output_head = bytes; },
        "With --json and in notebook runs: of --max-output-bytes, the bytes kept from the start of\n"
        "a cell's outputs (default 60 %); the rest are its last ones");
    cmd->add_flag("--save-full-output", args->save_full_output,
                  "Also keep all of the output, as text mode shows it (with --json too, none of it dropped),\n"
                  "in a new file of --output-dir, kernex-output.txt (-2, -3...: never an existing one), named\n"
                  "at the end: [saved the full output to PATH] (--json: full_output_file)");
    cmd->add_option("files", args->files, "Files to run ('-' for stdin)")->required();
    auto notebook_run = add_notebook_run_options(*cmd);  // FILE.ipynb, or -o FILE.ipynb: see run_notebook.cpp
    auto* quiet = cmd->get_option("--quiet");  // shared with notebook runs
    return [args, notebook_run, quiet, kernel] {
        args->quiet = quiet->count() > 0;
        if (args->save_full_output && (args->files[0].ends_with(".ipynb") || args->output_dir.ends_with(".ipynb")))
            throw error(errc::invalid_argument, "--save-full-output is for scripts: a notebook run keeps every "
                                                "output in the notebook it writes");
        check_kernel_arguments(*args);
        notebook_run_settings shared;  // what a notebook run takes from the flags above
        shared.new_kernel = [args, kernel] {
            auto ko = new_kernel_options(*args, run_gateway(*args));
            if (kernel->count() == 0) ko.kernel_name.clear();  // the notebook's own
            return ko;
        };
        shared.timeout = args->timeout;
        shared.keep_going = args->keep_going;
        shared.max_output_bytes = args->max_output_bytes;
        shared.max_output_head = args->max_output_head;
        if (auto status = notebook_run(shared)) return *status;
        return run(*args);
    };
}

}  // namespace kernex::cli
