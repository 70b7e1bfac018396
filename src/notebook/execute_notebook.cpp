// execute_notebook: nbclient's rules for turning a kernel's iopub outputs
// into a cell's nbformat outputs, on kernel_client's execute().
#include <algorithm>
#include <map>
#include <sstream>

#include "kernex/error.hpp"
#include "kernex/kernelspec.hpp"
#include "kernex/notebook.hpp"

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

// The outputs of every cell, with nbclient's display_id bookkeeping: for
// each display_id, the cells and output positions showing it.
class output_recorder {
public:
    explicit output_recorder(json& cells) : m_cells(cells) {}

    void begin(std::size_t cell_index) {
        m_cell = cell_index;
        m_clear_before_next = false;
        m_cells[m_cell]["outputs"] = json::array();
    }

    void add(const output& o) {
        std::visit([this](const auto& v) { on(v); }, o);
    }

private:
    json& outs() { return m_cells[m_cell]["outputs"]; }

    static std::string display_id_of(const json& transient) {
        if (transient.is_object() && transient.contains("display_id") && transient["display_id"].is_string())
            return transient["display_id"].get<std::string>();
        return {};
    }

    // A display_data or update_display_data with a display_id replaces the
    // data and metadata of every output recorded under that id, in any cell.
    void update_display(const std::string& id, const json& data, const json& metadata) {
        auto it = m_display_ids.find(id);
        if (it == m_display_ids.end()) return;
        for (const auto& [cell, positions] : it->second)
            for (auto pos : positions) {
                auto& out = m_cells[cell]["outputs"][pos];
                out["data"] = data;
                out["metadata"] = metadata;
            }
    }

    void clear_display_positions() {
        for (auto& [id, cells] : m_display_ids) {
            auto it = cells.find(m_cell);
            if (it != cells.end()) it->second.clear();
        }
    }

    void append(json out, const std::string& display_id = {}) {
        if (m_clear_before_next) {
            outs() = json::array();
            clear_display_positions();
            m_clear_before_next = false;
        }
        auto& list = outs();
        // Consecutive streams of one name become one output (an appended
        // stream never moves an output a display_id points at).
        if (out["output_type"] == "stream" && !list.empty()) {
            auto& last = list.back();
            if (last["output_type"] == "stream" && last["name"] == out["name"]) {
                last["text"].get_ref<std::string&>() += out["text"].get_ref<const std::string&>();
                return;
            }
        }
        if (!display_id.empty()) m_display_ids[display_id][m_cell].push_back(list.size());
        list.push_back(std::move(out));
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
        if (c.wait) {
            m_clear_before_next = true;
        } else {
            outs() = json::array();
            clear_display_positions();
        }
    }

    json& m_cells;
    std::size_t m_cell = 0;
    bool m_clear_before_next = false;
    std::map<std::string, std::map<std::size_t, std::vector<std::size_t>>> m_display_ids;
};

json error_output(const std::string& ename, const std::string& evalue) {
    return {{"output_type", "error"}, {"ename", ename}, {"evalue", evalue}, {"traceback", json::array({ename + ": " + evalue})}};
}

}  // namespace

notebook_result execute_notebook(notebook& nb, kernel_client& kc, const notebook_options& options) {
    auto info = kc.kernel_info();
    if (info.contains("language_info")) nb.doc()["metadata"]["language_info"] = info["language_info"];

    json& cells = nb.cells();
    std::size_t code_cells = 0;
    for (const auto& cell : cells) code_cells += cell["cell_type"] == "code";

    output_recorder recorder(cells);
    notebook_result result;
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

        execute_options eo;
        eo.timeout = options.timeout;
        eo.stop_on_error = !may_fail;
        eo.max_output_bytes = 0;  // outputs are recorded into the notebook as they arrive
        eo.on_input = options.on_input;
        eo.on_output = [&](const output& o) { recorder.add(o); };
        // kernel_client gives no message dates: these are the client's
        // clock when the request left and when the cell ended.
        timing["iopub.status.busy"] = utc_now_iso8601();
        timing["iopub.execute_input"] = timing["iopub.status.busy"];
        auto r = kc.execute(cells[i]["source"].get<std::string>(), eo);
        timing["shell.execute_reply"] = utc_now_iso8601();
        timing["iopub.status.idle"] = timing["shell.execute_reply"];
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
        const std::string where = "cell " + std::to_string(i) + " (code cell " + std::to_string(code_cell) + ")";
        const bool stopping = options.stop_requested && options.stop_requested();
        if (stopping && r.status != execution_status::kernel_died)
            return stop(notebook_status::interrupted, where + " was interrupted; the run stopped there");
        switch (r.status) {
        case execution_status::ok: break;
        case execution_status::error:
        case execution_status::aborted:
            if (!may_fail) {
                auto* e = r.error();
                return stop(notebook_status::cell_error,
                            where + " failed" + (e ? ": " + e->ename + ": " + e->evalue : std::string()));
            }
            // A raises-exception cell failing is what it is for; with
            // allow_errors the run goes on but says a cell failed.
            if (options.allow_errors && result.status == notebook_status::ok) result.status = notebook_status::cell_error;
            break;
        case execution_status::timeout: {
            std::ostringstream what;
            what << "the cell ran over its timeout of "
                 << std::chrono::duration<double>(options.timeout.value_or(std::chrono::milliseconds(0))).count()
                 << " s and was interrupted" << (r.restarted ? "; the kernel was restarted (its state is lost)" : "");
            cells[i]["outputs"].push_back(error_output("CellTimeoutError", what.str()));
            if (!options.allow_errors) return stop(notebook_status::timeout, where + ": " + what.str());
            result.status = notebook_status::timeout;
            break;
        }
        case execution_status::kernel_died: {
            std::string what = "the kernel died while this cell ran" + (r.note.empty() ? "" : " (" + r.note + ")");
            cells[i]["outputs"].push_back(error_output("DeadKernelError", what));
            return stop(notebook_status::kernel_died, where + ": " + what);
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
