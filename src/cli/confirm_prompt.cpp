#include "cli/confirm_prompt.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>

#include "kernex/error.hpp"

namespace kernex::cli {

terminal_prompt::terminal_prompt() {
    m_fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (m_fd < 0 || !::isatty(m_fd)) {
        if (m_fd >= 0) ::close(m_fd);
        throw error(errc::invalid_argument,
                    "--confirm asks before each block runs, on a terminal, and kernex has none (no controlling "
                    "terminal): run it from a terminal, or without --confirm");
    }
}

terminal_prompt::~terminal_prompt() {
    if (m_fd >= 0) ::close(m_fd);
}

void terminal_prompt::say(const std::string& text) {
    std::size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = ::write(m_fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        done += static_cast<std::size_t>(n);
    }
}

approve_hook terminal_prompt::hook(std::function<bool()> stopped) {
    return [this, stopped = std::move(stopped)](const block_review& r) { return ask(r, stopped); };
}

approval terminal_prompt::ask(const block_review& r, const std::function<bool()>& stopped) {
    if (m_all) return approval::run;
    std::string shown = "\n\x1b[1mkernex: block " + std::to_string(r.index + 1) + " of " + std::to_string(r.count) +
                        " (" + printable_code(r.language) + "), " + std::to_string(r.code.size()) +
                        " bytes, sha256 " + r.sha256 + "\x1b[0m\n";
    // The code, numbered, every byte a terminal would act on shown as an escape.
    const std::string code = printable_code(r.code);
    std::size_t line = 1, start = 0;
    while (start < code.size()) {
        std::size_t end = code.find('\n', start);
        if (end == std::string::npos) end = code.size();
        std::string number = std::to_string(line++);
        shown += std::string(number.size() < 4 ? 4 - number.size() : 0, ' ') + number + " | " +
                 code.substr(start, end - start) + "\n";
        start = end + 1;
    }
    if (r.hidden_characters > 0)
        shown += "WARNING: " + std::to_string(r.hidden_characters) +
                 " control or bidirectional character(s), shown above as \\x.. or \\u....\n";
    say(shown);
    for (;;) {
        say("Run it? [y]es, [n]o (skip it), [a]ll (this and the rest), [q]uit: ");
        std::string answer;
        for (;;) {
            if (stopped()) {
                say("\n");
                return approval::stop;
            }
            pollfd p{m_fd, POLLIN, 0};
            const int ready = ::poll(&p, 1, 200);
            if (ready < 0 && errno != EINTR) return approval::stop;
            if (ready <= 0) continue;
            char c;
            const ssize_t n = ::read(m_fd, &c, 1);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n <= 0) {  // end of input: nobody to ask
                say("\n");
                return approval::stop;
            }
            if (c == '\n') break;
            if (answer.size() < 64) answer += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        while (!answer.empty() && std::isspace(static_cast<unsigned char>(answer.back()))) answer.pop_back();
        while (!answer.empty() && std::isspace(static_cast<unsigned char>(answer.front()))) answer.erase(0, 1);
        if (answer == "y" || answer == "yes") return approval::run;
        if (answer == "n" || answer == "no") return approval::skip;
        if (answer == "a" || answer == "all") {
            m_all = true;
            return approval::run;
        }
        if (answer == "q" || answer == "quit") return approval::stop;
    }
}

}  // namespace kernex::cli
