// `kernex exec --confirm`: the approve hook that asks a human on the
// terminal (/dev/tty, so the message may come on stdin) before each block
// runs, showing the block's exact code with its hidden characters made
// visible: y (run it), n (skip it), a (run it and all the rest), q (quit:
// nothing more runs).
#pragma once

#include <functional>

#include "kernex/executor.hpp"

namespace kernex::cli {

class terminal_prompt {
public:
    // Opens the controlling terminal. Throws kernex::error(invalid_argument)
    // when there is none: --confirm never runs code unasked.
    terminal_prompt();
    ~terminal_prompt();
    terminal_prompt(const terminal_prompt&) = delete;
    terminal_prompt& operator=(const terminal_prompt&) = delete;

    // The hook. stopped() is polled while it waits for an answer: true (a
    // signal came) answers quit. End of input on the terminal answers quit.
    approve_hook hook(std::function<bool()> stopped);

private:
    approval ask(const block_review& r, const std::function<bool()>& stopped);
    void say(const std::string& text);

    int m_fd = -1;
    bool m_all = false;  // 'a' was answered: the rest run unasked
};

}  // namespace kernex::cli
