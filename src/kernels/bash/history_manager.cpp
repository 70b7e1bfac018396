#include "history_manager.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <set>

namespace kernex::bash {

void history_manager::set_next_line(int line) noexcept {
    std::lock_guard lock(m_mutex);
    m_next_line = line;
}

void history_manager::store_inputs_impl(int /*session*/, int line_num, const std::string& input,
                                        const std::string& /*output*/) {
    std::lock_guard lock(m_mutex);
    const int line = m_next_line > 0 ? m_next_line : line_num;
    m_next_line = 0;
    m_entries.push_back({line, input});
}

// kernex-bash has no execute_result, so a cell has no output to record:
// null, as IPython gives for a cell without one.
nl::json history_manager::row(const entry& e, bool output) {
    if (output)
        return nl::json::array({session_number, e.line, nl::json::array({e.input, nullptr})});
    return nl::json::array({session_number, e.line, e.input});
}

nl::json history_manager::reply(nl::json rows) {
    return {{"status", "ok"}, {"history", std::move(rows)}};
}

nl::json history_manager::get_tail_impl(int n, bool /*raw*/, bool output) const {
    std::lock_guard lock(m_mutex);
    nl::json rows = nl::json::array();
    const std::size_t count = std::min(static_cast<std::size_t>(std::max(n, 0)), m_entries.size());
    for (auto it = m_entries.end() - static_cast<std::ptrdiff_t>(count); it != m_entries.end(); ++it)
        rows.push_back(row(*it, output));
    return reply(std::move(rows));
}

nl::json history_manager::get_range_impl(int session, int start, int stop, bool /*raw*/,
                                         bool output) const {
    std::lock_guard lock(m_mutex);
    nl::json rows = nl::json::array();
    // Session 0 is the current one (IPython's rule); earlier sessions are not kept.
    if (session != 0 && session != session_number) return reply(std::move(rows));
    for (const entry& e : m_entries)
        if (e.line >= start && (stop <= 0 || e.line < stop)) rows.push_back(row(e, output));
    return reply(std::move(rows));
}

nl::json history_manager::search_impl(const std::string& pattern, bool /*raw*/, bool output,
                                      int n, bool unique) const {
    std::lock_guard lock(m_mutex);
    // Newest first, so that n and unique keep the latest matches.
    std::vector<const entry*> found;
    std::set<std::string> seen;
    for (auto it = m_entries.rbegin(); it != m_entries.rend(); ++it) {
        if (n > 0 && found.size() >= static_cast<std::size_t>(n)) break;
        if (::fnmatch(pattern.c_str(), it->input.c_str(), 0) != 0) continue;
        if (unique && !seen.insert(it->input).second) continue;
        found.push_back(&*it);
    }
    nl::json rows = nl::json::array();
    for (auto it = found.rbegin(); it != found.rend(); ++it) rows.push_back(row(**it, output));
    return reply(std::move(rows));
}

}  // namespace kernex::bash
