// kernex-bash's input history, answering history_request as the messaging
// spec and IPython do: rows [session, line, input] (or [session, line,
// [input, output]] with output=True) with integer session and line numbers,
// tail, range (stop exclusive; session 0 is the current one) and search (a
// glob over the whole input, the latest n matches, unique keeping each
// input's latest occurrence), oldest first. xeus 2.4's in-memory manager
// gave rows of four strings and line 1 for every cell.
#pragma once

#include <xeus/xhistory_manager.hpp>

#include <mutex>
#include <string>
#include <vector>

namespace kernex::bash {

class history_manager final : public xeus::xhistory_manager {
public:
    // The one session of this kernel's life (history is kept in memory).
    static constexpr int session_number = 1;

    // The execution count of the cell xeus stores next: xeus 2.4 passes the
    // request's (absent) execution_count instead. Called by the interpreter
    // on the thread that then stores the cell.
    void set_next_line(int line) noexcept;

private:
    struct entry {
        int line;
        std::string input;
    };

    void configure_impl() override {}
    void store_inputs_impl(int session, int line_num, const std::string& input,
                           const std::string& output) override;
    nl::json get_tail_impl(int n, bool raw, bool output) const override;
    nl::json get_range_impl(int session, int start, int stop, bool raw, bool output) const override;
    nl::json search_impl(const std::string& pattern, bool raw, bool output, int n,
                         bool unique) const override;

    static nl::json row(const entry& e, bool output);
    static nl::json reply(nl::json rows);

    mutable std::mutex m_mutex;  // requests come on the shell and the control thread
    std::vector<entry> m_entries;
    int m_next_line = 0;
};

}  // namespace kernex::bash
