#include "executors/code_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "confine/files.hpp"
#include "kernex/error.hpp"
#include "wire/sha256.hpp"

namespace kernex::detail {

namespace fs = std::filesystem;

// Ours, not OpenSSL's: `kernex exec` does not load libcrypto (wire/sha256.hpp).
std::string sha256_hex(std::string_view data) {
    const sha256_digest digest = sha256(data);
    static constexpr char digits[] = "0123456789abcdef";
    std::string hex;
    for (const unsigned char byte : digest) {
        hex += digits[byte >> 4];
        hex += digits[byte & 0x0f];
    }
    return hex;
}

const file_language* find_language(const std::vector<file_language>& table, std::string_view name) {
    for (const auto& lang : table)
        if (std::find(lang.names.begin(), lang.names.end(), name) != lang.names.end()) return &lang;
    return nullptr;
}

std::string known_languages(const std::vector<file_language>& table) {
    std::string out;
    for (const auto& lang : table) {
        out.append(out.empty() ? "" : ", ").append(lang.names[0]);
        for (std::size_t i = 1; i < lang.names.size(); ++i)
            out.append(i == 1 ? " (" : ", ").append(lang.names[i]).append(i + 1 == lang.names.size() ? ")" : "");
    }
    return out;
}

std::vector<std::vector<std::string>> language_names(const std::vector<file_language>& table) {
    std::vector<std::vector<std::string>> out;
    for (const auto& lang : table) out.push_back(lang.names);
    return out;
}

made_work_dir make_work_dir(const std::optional<fs::path>& given) {
    std::error_code ec;
    if (given) {
        fs::create_directories(*given, ec);
        if (ec || !fs::is_directory(*given, ec))
            throw error(errc::io_error, "cannot create the work dir " + given->string() + ": " +
                                            (ec ? ec.message() : "not a directory"));
        return {*given, false};
    }
    std::string pattern = (fs::temp_directory_path(ec) / "kernex-XXXXXX").string();
    if (!::mkdtemp(pattern.data()))
        throw error(errc::io_error, "cannot create a temporary work dir " + pattern + ": " + std::strerror(errno));
    return {pattern, true};
}

void open_cancel_pipe(int& read_end, int& write_end) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
        throw error(errc::io_error, std::string("pipe2 failed: ") + std::strerror(errno));
    read_end = fds[0];
    write_end = fds[1];
}

void send_cancel(int write_end) noexcept { [[maybe_unused]] const ssize_t n = ::write(write_end, "!", 1); }

void drain_cancel(int read_end) noexcept {
    char sink[64];
    while (::read(read_end, sink, sizeof sink) > 0) {}
}

void output_cap::check(std::string_view executor) const {
    if (head && *head > max)
        throw error(errc::invalid_argument, "option 'max_output_head' of executor " + std::string(executor) + " (" +
                                                std::to_string(*head) + ") is larger than max_output (" +
                                                std::to_string(max) + ")");
}

namespace {

bool continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

void block_output::pass(std::string_view text) {
    if (text.empty()) return;
    m_result.output.append(text);
    if (m_on_output) m_on_output(text);
}

void block_output::copy(std::string_view text) {
    if (m_full) m_full->write(text);
}

void block_output::emit(std::string_view text) {
    if (text.empty()) return;
    copy(text);
    m_last = text.back();
    if (!m_holding) {
        if (text.size() <= m_head_room) {
            m_head_room -= text.size();
            pass(text);
            return;
        }
        std::size_t cut = m_head_room;
        while (cut > 0 && continuation(text[cut])) --cut;  // not inside a character
        pass(text.substr(0, cut));
        text.remove_prefix(cut);
        m_head_room = 0;
        m_holding = true;
    }
    const std::size_t tail_room = m_cap.max - std::min(m_cap.max, m_cap.head_bytes());
    if (text.size() >= tail_room) {
        // Only text's last bytes can stay, and none of the code's held
        // before it: they are dropped here, before anything is copied (one
        // 250 MB output message is not held a second time in the tail).
        for (auto it = m_tail.begin(); it != m_tail.end();) {
            if (it->ours) {
                ++it;
                continue;
            }
            m_dropped += it->text.size();
            m_tail_bytes -= it->text.size();
            it = m_tail.erase(it);
        }
        std::size_t n = text.size() - tail_room;
        while (n < text.size() && continuation(text[n])) ++n;
        m_dropped += n;
        text.remove_prefix(n);
        if (text.empty()) return;
    }
    if (!m_tail.empty() && !m_tail.back().ours) m_tail.back().text.append(text);
    else m_tail.push_back({std::string(text), false});
    m_tail_bytes += text.size();
    // Drop the oldest of the code's bytes held back beyond the tail's share.
    for (auto it = m_tail.begin(); m_tail_bytes > tail_room && it != m_tail.end();) {
        if (it->ours) {
            ++it;
            continue;
        }
        std::size_t n = std::min(it->text.size(), m_tail_bytes - tail_room);
        while (n < it->text.size() && continuation(it->text[n])) ++n;
        m_dropped += n;
        m_tail_bytes -= n;
        if (n == it->text.size()) it = m_tail.erase(it);
        else it->text.erase(0, n);
    }
}

void block_output::say(const std::string& line) {
    const std::string text = (m_last == '\n' ? "" : "\n") + line + "\n";
    copy(text);
    m_last = '\n';
    if (m_holding) m_tail.push_back({text, true});
    else pass(text);
}

void block_output::save_full_output(const std::filesystem::path& dir) {
    m_full.emplace(dir);
    m_result.full_output_file = m_full->path();
}

void block_output::finish() {
    if (m_dropped > 0) {
        m_result.truncated = true;
        const bool at_line = m_result.output.empty() || m_result.output.back() == '\n';
        pass((at_line ? "" : "\n") + truncated_line(m_dropped) + "\n");
    }
    for (const auto& p : m_tail) pass(p.text);
    m_tail.clear();
    m_tail_bytes = 0;
    if (m_result.full_output_file && m_dropped > 0) {
        const std::string where = "[saved the full output to " + m_result.full_output_file->string() + "]\n";
        pass((m_result.output.empty() || m_result.output.back() == '\n' ? "" : "\n") + where);
    }
    if (m_full && !m_full->error().empty())
        pass("kernex: the full output's file " + m_full->path().string() + " is incomplete: " + m_full->error() + "\n");
    m_dropped = 0;
}

block_limit limit_for_block(std::chrono::steady_clock::time_point call_deadline, std::chrono::milliseconds call_timeout,
                            const std::optional<std::chrono::milliseconds>& block_timeout) {
    const auto now = std::chrono::steady_clock::now();
    if (block_timeout && now + *block_timeout < call_deadline) return {now + *block_timeout, *block_timeout};
    return {call_deadline, call_timeout};
}

std::string timeout_line(std::chrono::milliseconds timeout) {
    return "Timeout: the code ran longer than " + seconds_text(timeout) + " and was stopped";
}

std::string truncated_line(std::uint64_t dropped) {
    return "[\u2026 " + std::to_string(dropped) + " bytes dropped \u2026]";
}

std::optional<std::string> block_file_name(const fs::path& dir, std::string_view code, std::string_view extension) {
    const std::string directive = filename_directive(code);
    if (directive.empty()) return hashed_code_name(code, extension);
    return name_inside(dir, directive);
}

namespace {

fs::path write_block_file_or_throw(const fs::path& dir, const std::string& name, std::string_view code) {
    // Beneath the work dir's fd, no symlink followed, a new file each time:
    // code left running by an earlier block may have swapped a dir on the
    // way for a symlink, or planted a link, FIFO or device at the name.
    try {
        const confine::unique_fd dir_fd = confine::open_dir(dir);
        const std::string used =
            confine::write_beneath(dir_fd.get(), name, code, {.mode = 0600, .existing = confine::if_exists::replace});
        return dir / used;
    } catch (const error& e) {
        if (e.code() == errc::invalid_argument)
            throw error(errc::invalid_argument, filename_refusal(name));
        throw;
    }
}

}  // namespace

std::optional<fs::path> write_block_file(const fs::path& dir, const std::string& name, const std::string& code,
                                         block_output& out) {
    try {
        return write_block_file_or_throw(dir, name, code);
    } catch (const error& e) {
        out.say(e.what());
        return std::nullopt;
    }
}

std::string hashed_code_name(std::string_view code, std::string_view extension) {
    return "tmp_code_" + sha256_hex(code).substr(0, 32) + "." + std::string(extension);
}

std::string filename_directive(std::string_view code) {
    auto trim = [](std::string_view s) {
        const auto first = s.find_first_not_of(" \t\r");
        if (first == std::string_view::npos) return std::string_view();
        return s.substr(first, s.find_last_not_of(" \t\r") - first + 1);
    };
    const std::string_view line = trim(code.substr(0, code.find('\n')));
    static constexpr std::pair<std::string_view, std::string_view> comments[] = {
        {"<!--", "-->"}, {"/*", "*/"}, {"//", ""}, {"#", ""}};
    for (const auto& [open, close] : comments) {
        if (line.size() < open.size() + close.size() || !line.starts_with(open) || !line.ends_with(close)) continue;
        std::string_view inner = trim(line.substr(open.size(), line.size() - open.size() - close.size()));
        constexpr std::string_view key = "filename:";
        if (!inner.starts_with(key)) return {};
        return std::string(trim(inner.substr(key.size())));
    }
    return {};
}

std::string length_problem(const fs::path& name) {
    for (const auto& part : name)
        if (part.native().size() > NAME_MAX)
            return "a part of it has " + std::to_string(part.native().size()) + " bytes, the file system takes at most " +
                   std::to_string(NAME_MAX) + " (a shorter name, or a directory per part)";
    if (name.native().size() >= PATH_MAX)
        return std::to_string(name.native().size()) + " bytes, paths take at most " + std::to_string(PATH_MAX - 1);
    return {};
}

std::optional<std::string> name_inside(const fs::path& dir, const std::string& name) {
    fs::path path = fs::path(name).lexically_normal();
    if (path.is_absolute()) {
        const auto [d, p] = std::mismatch(dir.begin(), dir.end(), path.begin(), path.end());
        if (d != dir.end() || p == path.end()) return std::nullopt;
        path = path.lexically_relative(dir);
    }
    if (path.empty() || path == "." || *path.begin() == ".." || path.filename().empty()) return std::nullopt;
    // Too long for the file system or for the interpreter to open by its
    // path: refused before anything is made (filename_refusal says which).
    if (!length_problem(path).empty()) return std::nullopt;
    // A symlink on the way now is refused before anything runs, with the
    // message the user expects; one made later (a race) is refused again,
    // for real, when the file is created.
    fs::path at = dir;
    for (const auto& part : path) {
        at /= part;
        std::error_code ec;
        const auto st = fs::symlink_status(at, ec);
        if (st.type() == fs::file_type::not_found) break;
        if (ec || fs::is_symlink(st) || (at != dir / path && !fs::is_directory(st))) return std::nullopt;
    }
    return path.string();
}

std::string filename_refusal(const std::string& name) {
    const std::string problem = length_problem(name);
    if (problem.empty()) return "filename is not inside the work dir: " + name;
    // A long name is shown by its start: the block's first line holds all of it.
    const std::string shown = name.size() > 80 ? name.substr(0, 60) + "\u2026 (" + std::to_string(name.size()) + " bytes)" : name;
    return "filename is too long: " + problem + ": " + shown;
}

std::string seconds_text(std::chrono::milliseconds ms) {
    const auto count = ms.count();
    std::string text = std::to_string(count / 1000);
    if (count % 1000) {
        std::string frac = std::to_string(1000 + count % 1000).substr(1);
        while (frac.back() == '0') frac.pop_back();
        text += "." + frac;
    }
    return text + " s";
}

}  // namespace kernex::detail

namespace kernex {

std::filesystem::path save_code_block(const std::filesystem::path& dir, std::string_view code,
                                      std::string_view extension) {
    const auto name = detail::block_file_name(dir, code, extension);
    if (!name)
        throw error(errc::invalid_argument, detail::filename_refusal(detail::filename_directive(code)));
    return detail::write_block_file_or_throw(dir, *name, code);
}

}  // namespace kernex
