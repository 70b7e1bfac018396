// execute_notebook: nbclient's rules for turning a kernel's iopub outputs
// into a cell's nbformat outputs, on kernel_client's execute().
#include <algorithm>
#include <cstdint>
#include <deque>
#include <regex>
#include <map>
#include <sstream>

#include "kernex/error.hpp"
#include "kernex/kernelspec.hpp"
#include "kernex/notebook.hpp"
#include "kernex/output_files.hpp"

namespace kernex {

std::string_view to_string(notebook_status s) noexcept {
    switch (s) {
    case notebook_status::ok: return "ok";
    case notebook_status::cell_error: return "cell_error";
    case notebook_status::timeout: return "timeout";
    case notebook_status::kernel_died: return "kernel_died";
    case notebook_status::interrupted: return "interrupted";
    }
    return "unknown";
}

namespace {

bool has_tag(const json& cell, const std::string& tag) {
    if (tag.empty()) return false;
    const auto& md = cell["metadata"];
    if (!md.contains("tags") || !md["tags"].is_array()) return false;
    return std::any_of(md["tags"].begin(), md["tags"].end(), [&](const json& t) { return t == tag; });
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n\f\v") == std::string::npos; }

// A string's cut near at that falls between UTF-8 characters: back from at
// (a head's end) or on from it (a tail's start).
std::size_t char_boundary(const std::string& text, std::size_t at, bool forward) {
    auto inside = [&](std::size_t i) { return i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80; };
    at = std::min(at, text.size());
    if (forward)
        while (inside(at)) ++at;
    else
        while (at > 0 && inside(at)) --at;
    return at;
}

// The outputs of every cell, with nbclient's display_id bookkeeping: for
// each display_id, the cells and output positions showing it. A cell keeps
// at most max bytes of outputs (output_bytes): the first head of them as
// they come, then the last ones, held apart until the cell ends, with a
// stderr stream "[… N bytes dropped …]" between the two when some were
// dropped (as `kernex run --json` keeps a cell's outputs).
class output_recorder {
public:
    output_recorder(json& cells, std::size_t max, std::size_t head)
        : m_cells(cells), m_max(max == 0 ? SIZE_MAX : max), m_head(max == 0 ? SIZE_MAX : std::min(head, max)) {}

    void begin(std::size_t cell_index) {
        m_cell = cell_index;
        m_clear_before_next = false;
        m_cells[m_cell]["outputs"] = json::array();
        reset_budget();
    }

    void add(const output& o) {
        m_size = output_bytes(o);
        std::visit([this](const auto& v) { on(v); }, o);
    }

    // Ends the cell: the outputs held as its tail go after the head, the
    // notice of what was dropped between them.
    void finish() {
        if (m_dropped > 0)
            push(notice(m_dropped), {});
        for (auto& t : m_tail) push(std::move(t.out), t.display_id, m_dropped == 0);
        reset_budget();
    }

    // Bytes of the cell's comm messages not kept: in the notice too.
    void drop(std::uint64_t bytes) { m_dropped += bytes; }

    static json notice(std::uint64_t dropped) {
        return {{"output_type", "stream"},
                {"name", "stderr"},
                {"text", "[\u2026 " + std::to_string(dropped) + " bytes dropped \u2026]\n"}};
    }

private:
    struct held {
        json out;
        std::string display_id;
        std::size_t bytes = 0;
    };

    json& outs() { return m_cells[m_cell]["outputs"]; }

    void reset_budget() {
        m_head_room = m_head;
        m_tail_room = m_max - m_head;
        m_holding = false;
        m_tail.clear();
        m_tail_bytes = 0;
        m_dropped = 0;
    }

    static std::string display_id_of(const json& transient) {
        if (transient.is_object() && transient.contains("display_id") && transient["display_id"].is_string())
            return transient["display_id"].get<std::string>();
        return {};
    }

    // A display_data or update_display_data with a display_id replaces the
    // data and metadata of every output recorded under that id, in any cell.
    void update_display(const std::string& id, const json& data, const json& metadata) {
        if (auto it = m_display_ids.find(id); it != m_display_ids.end())
            for (const auto& [cell, positions] : it->second)
                for (auto pos : positions) {
                    auto& out = m_cells[cell]["outputs"][pos];
                    out["data"] = data;
                    out["metadata"] = metadata;
                }
        for (auto& t : m_tail)
            if (t.display_id == id) {
                t.out["data"] = data;
                t.out["metadata"] = metadata;
            }
    }

    void clear_display_positions() {
        for (auto& [id, cells] : m_display_ids) {
            auto it = cells.find(m_cell);
            if (it != cells.end()) it->second.clear();
        }
    }

    void clear() {
        outs() = json::array();
        clear_display_positions();
        reset_budget();
    }

    static bool same_stream(const json& a, const json& b) {
        return a["output_type"] == "stream" && b["output_type"] == "stream" && a["name"] == b["name"];
    }

    // Into the cell's list. Consecutive streams of one name become one
    // output (an appended stream never moves an output a display_id points at).
    void push(json out, const std::string& display_id, bool merge = true) {
        auto& list = outs();
        if (merge && !list.empty() && same_stream(list.back(), out)) {
            list.back()["text"].get_ref<std::string&>() += out["text"].get_ref<const std::string&>();
            return;
        }
        if (!display_id.empty()) m_display_ids[display_id][m_cell].push_back(list.size());
        list.push_back(std::move(out));
    }

    void append(json out, const std::string& display_id = {}) {
        if (m_clear_before_next) {
            clear();
            m_clear_before_next = false;
        }
        std::size_t size = m_size;
        const bool stream = out["output_type"] == "stream";
        if (!m_holding) {
            if (size <= m_head_room) {
                m_head_room -= size;
                push(std::move(out), display_id);
                return;
            }
            // Over the head: what follows is the tail.
            m_holding = true;
            if (stream) {
                auto& text = out["text"].get_ref<std::string&>();
                const std::size_t cut = char_boundary(text, m_head_room, false);
                if (cut > 0) {
                    json head = out;
                    head["text"] = text.substr(0, cut);
                    push(std::move(head), {});
                    text.erase(0, cut);
                    size -= std::min(size, cut);
                }
            }
            m_head_room = 0;
        }
        if (stream && !m_tail.empty() && same_stream(m_tail.back().out, out)) {
            m_tail.back().out["text"].get_ref<std::string&>() += out["text"].get_ref<const std::string&>();
            m_tail.back().bytes += size;
        } else {
            m_tail.push_back({std::move(out), display_id, size});
        }
        m_tail_bytes += size;
        trim();
    }

    // Drops the oldest of the tail until it fits its room.
    void trim() {
        while (m_tail_bytes > m_tail_room && !m_tail.empty()) {
            const std::size_t over = m_tail_bytes - m_tail_room;
            auto& front = m_tail.front();
            if (front.out["output_type"] == "stream" && over < front.bytes) {
                auto& text = front.out["text"].get_ref<std::string&>();
                const std::size_t cut = char_boundary(text, over, true);
                text.erase(0, cut);
                front.bytes -= std::min(front.bytes, cut);
                m_tail_bytes -= std::min(m_tail_bytes, cut);
                m_dropped += cut;
                if (!text.empty()) break;
            } else {
                m_tail_bytes -= std::min(m_tail_bytes, front.bytes);
                m_dropped += front.bytes;
            }
            m_tail.pop_front();
        }
    }

    static json bundle(const json& j) { return j.is_null() ? json::object() : j; }

    void on(const outputs::stream& s) {
        append({{"output_type", "stream"}, {"name", s.name}, {"text", s.text}});
    }
    void on(const outputs::display_data& d) {
        auto id = display_id_of(d.transient);
        if (!id.empty()) update_display(id, bundle(d.data), bundle(d.metadata));
        append({{"output_type", "display_data"}, {"data", bundle(d.data)}, {"metadata", bundle(d.metadata)}}, id);
    }
    void on(const outputs::update_display_data& u) {
        if (!u.display_id.empty()) update_display(u.display_id, bundle(u.data), bundle(u.metadata));
    }
    void on(const outputs::execute_result& r) {
        append({{"output_type", "execute_result"},
                {"execution_count", r.execution_count},
                {"data", bundle(r.data)},
                {"metadata", bundle(r.metadata)}});
    }
    void on(const outputs::error& e) {
        append({{"output_type", "error"}, {"ename", e.ename}, {"evalue", e.evalue}, {"traceback", e.traceback}});
    }
    void on(const outputs::clear_output& c) {
        if (c.wait)
            m_clear_before_next = true;
        else
            clear();
    }

    json& m_cells;
    const std::size_t m_max, m_head;
    std::size_t m_cell = 0;
    bool m_clear_before_next = false;
    std::map<std::string, std::map<std::size_t, std::vector<std::size_t>>> m_display_ids;
    std::size_t m_size = 0;  // of the output being added
    std::size_t m_head_room = 0, m_tail_room = 0, m_tail_bytes = 0;
    bool m_holding = false;
    std::deque<held> m_tail;
    std::uint64_t m_dropped = 0;
};

// Widget state as nbclient keeps it (store_widget_state): every comm message
// of a cell whose data holds a "state" updates that comm's state, and its
// buffers (base64, by buffer path); written to the notebook's
// metadata.widgets at the end, for the models that named _model_name.
class widget_recorder {
public:
    void add(const comm_message& c) {
        if (!c.data.is_object() || !c.data.contains("state") || !c.data["state"].is_object()) return;
        auto& state = m_state[c.comm_id];
        if (!state.is_object()) state = json::object();
        state.update(c.data["state"]);
        const auto paths = c.data.find("buffer_paths");
        if (paths == c.data.end() || !paths->is_array() || paths->empty()) return;
        // One buffer per path, in the order the paths first came (a dict in nbclient).
        auto& buffers = m_buffers[c.comm_id];
        for (std::size_t i = 0; i < paths->size() && i < c.buffers.size(); ++i) {
            json buffer = {{"data", base64_encode(c.buffers[i])}, {"encoding", "base64"}, {"path", (*paths)[i]}};
            auto same = std::find_if(buffers.begin(), buffers.end(), [&](const json& b) { return b["path"] == (*paths)[i]; });
            if (same != buffers.end())
                *same = std::move(buffer);
            else
                buffers.push_back(std::move(buffer));
        }
    }

    // What nbclient's set_widgets_metadata writes; nothing when no state came.
    void write(json& metadata) const {
        if (m_state.empty()) return;
        json states = json::object();
        for (const auto& [id, state] : m_state) {
            if (!state.contains("_model_name")) continue;
            auto field = [&](const char* key) { return state.contains(key) ? state[key] : json(); };
            json w = {{"model_name", field("_model_name")},
                      {"model_module", field("_model_module")},
                      {"model_module_version", field("_model_module_version")},
                      {"state", state}};
            if (auto b = m_buffers.find(id); b != m_buffers.end() && !b->second.empty()) w["buffers"] = b->second;
            states[id] = std::move(w);
        }
        metadata["widgets"] = {{"application/vnd.jupyter.widget-state+json",
                                {{"state", std::move(states)}, {"version_major", 2}, {"version_minor", 0}}}};
    }

private:
    std::map<std::string, json> m_state;                  // comm_id -> its state, updates merged
    std::map<std::string, std::vector<json>> m_buffers;  // comm_id -> its buffers
};

json error_output(const std::string& ename, const std::string& evalue) {
    return {{"output_type", "error"}, {"ename", ename}, {"evalue", evalue}, {"traceback", json::array({ename + ": " + evalue})}};
}

// A message's date as nbclient records it in metadata.execution:
// jupyter_client parses an ISO 8601 date (up to 6 digits of fraction, an
// optional zone) and nbclient formats it '%Y-%m-%dT%H:%M:%S.%fZ' (the zone
// dropped, not applied); any other date, or none, is the client's clock now.
std::string nbclient_timestamp(const std::string& date) {
    static const std::regex iso(R"(^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(?:Z|[+-]\d{2}:?\d{2})?$)");
    std::smatch m;
    if (!std::regex_match(date, m, iso)) return utc_now_iso8601();
    std::string fraction = m[2].matched ? m[2].str() : std::string();
    fraction.resize(6, '0');
    return m[1].str() + "." + fraction + "Z";
}

// "2 s", "1.5 s": as kernex run and the executors say a timeout.
std::string seconds_text(std::chrono::milliseconds t) {
    char text[32];
    std::snprintf(text, sizeof text, "%g s", std::chrono::duration<double>(t).count());
    return text;
}

}  // namespace

std::string notebook_timeout_message(std::chrono::milliseconds timeout, bool restarted) {
    return "Timeout: the code ran longer than " + seconds_text(timeout) + " and was stopped" +
           (restarted ? " (the kernel was restarted: its state is lost)" : "");
}

notebook_result execute_notebook(notebook& nb, kernel_client& kc, const notebook_options& options) {
    auto info = kc.kernel_info();
    if (info.contains("language_info")) nb.doc()["metadata"]["language_info"] = info["language_info"];

    json& cells = nb.cells();
    std::size_t code_cells = 0;
    for (const auto& cell : cells) code_cells += cell["cell_type"] == "code";

    const std::size_t max = options.max_output_bytes;
    output_recorder recorder(cells, max, options.max_output_head.value_or(max / 10 * 6 + max % 10 * 6 / 10));
    widget_recorder widgets;
    notebook_result result;
    // The widget state goes into the notebook however the run ends.
    struct write_widgets {
        const widget_recorder& w;
        notebook& nb;
        bool store;
        ~write_widgets() {
            if (store) w.write(nb.doc()["metadata"]);
        }
    } at_end{widgets, nb, options.store_widget_state};
    std::size_t code_cell = 0;
    for (std::size_t i = 0; i < cells.size(); ++i) {
        if (cells[i]["cell_type"] != "code") continue;
        ++code_cell;
        // nbclient leaves blank and skip-tagged cells as they are.
        if (blank(cells[i]["source"].get<std::string>()) || has_tag(cells[i], options.skip_tag)) continue;
        if (options.on_progress) options.on_progress({i, code_cell, code_cells, false, execution_status::ok});

        const bool may_fail = options.allow_errors || has_tag(cells[i], options.raises_tag);
        cells[i]["metadata"]["execution"] = json::object();
        auto& timing = cells[i]["metadata"]["execution"];
        recorder.begin(i);

        // The cell's comm messages (ipywidgets' state), within the cell's
        // output budget; those of this cell's request are kept after it.
        std::vector<comm_message> comms;
        std::size_t comm_bytes = 0;
        execute_options eo;
        eo.timeout = options.timeout;
        eo.stop_on_error = !may_fail;
        eo.max_output_bytes = 0;  // outputs are recorded into the notebook as they arrive
        eo.on_input = options.on_input;
        eo.stop = options.stop;
        eo.on_output = [&](const output& o) { recorder.add(o); };
        if (options.store_widget_state)
            eo.on_comm = [&](const comm_message& c) {
                const auto n = output_bytes(c);
                if (max != 0 && comm_bytes + n > max) return recorder.drop(n);
                comm_bytes += n;
                comms.push_back(c);
            };
        execution r;
        try {
            r = kc.execute(cells[i]["source"].get<std::string>(), eo);
        } catch (...) {
            recorder.finish();  // what came is kept
            throw;
        }
        for (const auto& c : comms)
            if (c.parent_msg_id == r.msg_id) widgets.add(c);
        recorder.finish();
        // As nbclient: each message's own date, for the messages that came.
        const std::pair<const char*, const std::string*> dates[] = {{"iopub.status.busy", &r.dates.busy},
                                                                    {"iopub.execute_input", &r.dates.execute_input},
                                                                    {"shell.execute_reply", &r.dates.reply},
                                                                    {"iopub.status.idle", &r.dates.idle}};
        for (const auto& [key, date] : dates)
            if (!date->empty()) timing[key] = nbclient_timestamp(*date);
        ++result.cells_executed;
        // As nbclient: the count of cells this run executed.
        cells[i]["execution_count"] = result.cells_executed;

        if (options.on_progress) options.on_progress({i, code_cell, code_cells, true, r.status});

        auto stop = [&](notebook_status s, std::string message) {
            result.status = s;
            result.stopped_at = i;
            result.message = std::move(message);
            return result;
        };
        const bool stopping = (options.stop_requested && options.stop_requested()) || options.stop.stop_requested();
        if (r.abandoned)
            return stop(notebook_status::interrupted, "Interrupted: the cell did not stop and was abandoned");
        if (stopping && r.status != execution_status::kernel_died) return stop(notebook_status::interrupted, "Interrupted");
        switch (r.status) {
        case execution_status::ok: break;
        case execution_status::error:
        case execution_status::aborted:
            if (!may_fail) {
                // The error output, as recorded (kernel_client keeps none: max_output_bytes 0).
                const auto& outs = cells[i]["outputs"];
                auto e = std::find_if(outs.rbegin(), outs.rend(), [](const json& o) { return o["output_type"] == "error"; });
                return stop(notebook_status::cell_error,
                            e != outs.rend() ? (*e)["ename"].get<std::string>() + ": " + (*e)["evalue"].get<std::string>()
                                             : std::string("the cell failed"));
            }
            // A raises-exception cell failing is what it is for; with
            // allow_errors the run goes on but says a cell failed.
            if (options.allow_errors && result.status == notebook_status::ok) result.status = notebook_status::cell_error;
            break;
        case execution_status::timeout: {
            const auto what = notebook_timeout_message(options.timeout.value_or(std::chrono::milliseconds(0)), r.restarted);
            cells[i]["outputs"].push_back(error_output("CellTimeoutError", what));
            if (!options.allow_errors) return stop(notebook_status::timeout, what);
            result.status = notebook_status::timeout;
            break;
        }
        case execution_status::kernel_died: {
            // kernel_client's words, as kernex run says them for a script.
            const std::string what = r.note.empty() ? "the kernel died while running the cell" : r.note;
            cells[i]["outputs"].push_back(error_output("DeadKernelError", what));
            return stop(notebook_status::kernel_died, what);
        }
        }
    }
    // With --continue, errors do not stop the run; the status still says a cell failed.
    if (result.status != notebook_status::ok && result.message.empty()) result.message = "some cells failed";
    return result;
}

notebook_result execute_notebook(notebook& nb, const notebook_options& options, kernel_options kernel) {
    if (kernel.kernel_name.empty()) kernel.kernel_name = nb.kernel_name();
    if (kernel.kernel_name.empty()) kernel.kernel_name = "python3";
    auto km = kernel_manager::start(kernel);
    return execute_notebook(nb, km.client(), options);
}

}  // namespace kernex
