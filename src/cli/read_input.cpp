// Reading a command's input: a file named on the command line, or stdin.
// Everything is checked here, before anything runs: a file that is missing,
// unreadable or a directory, and text that is not UTF-8 (a kernel takes
// Unicode text; the message to it would fail half-way through a run).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "cli/commands.hpp"
#include "kernex/error.hpp"

namespace kernex::cli {

namespace {

// The length of the valid UTF-8 sequence at text[i], 0 when invalid.
std::size_t utf8_length(std::string_view text, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char c = b(i);
    if (c < 0x80) return 1;
    std::size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (n == 0 || i + n > text.size()) return 0;
    for (std::size_t k = 1; k < n; ++k)
        if ((b(i + k) & 0xC0) != 0x80) return 0;
    // Overlong forms, surrogates and code points above U+10FFFF.
    if (c == 0xE0 && b(i + 1) < 0xA0) return 0;
    if (c == 0xED && b(i + 1) > 0x9F) return 0;
    if (c == 0xF0 && b(i + 1) < 0x90) return 0;
    if (c == 0xF4 && b(i + 1) > 0x8F) return 0;
    return n;
}

std::string name_of(const std::string& file) { return file == "-" ? std::string("stdin") : file; }

std::string read_fd(int fd, const std::string& file) {
    std::string text;
    char buf[65536];
    for (;;) {
        const auto n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw error(errc::io_error, "cannot read " + name_of(file) + ": " + std::strerror(errno));
        if (n == 0) return text;
        text.append(buf, static_cast<std::size_t>(n));
    }
}

}  // namespace

void check_utf8(std::string_view text, const std::string& file) {
    std::size_t line = 1, line_start = 0;
    for (std::size_t i = 0; i < text.size();) {
        const auto n = utf8_length(text, i);
        if (n == 0) {
            char byte[8];
            std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>(text[i]));
            throw error(errc::invalid_argument, name_of(file) + ", line " + std::to_string(line) + ", byte " +
                                                    std::to_string(i - line_start + 1) + ": not UTF-8 text (" +
                                                    byte + "); kernels take Unicode text: convert it with iconv");
        }
        if (text[i] == '\n') {
            ++line;
            line_start = i + 1;
        }
        i += n;
    }
}

std::string read_input(const std::string& file) {
    if (file == "-") {
        auto text = read_fd(STDIN_FILENO, file);
        check_utf8(text, file);
        return text;
    }
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        const int e = errno;
        const char* why = e == ENOENT         ? "no such file"
                          : e == EACCES       ? "permission denied"
                          : e == ENAMETOOLONG ? "the name is too long for the file system"
                                              : std::strerror(e);
        throw error(e == ENOENT ? errc::not_found : errc::io_error, "cannot read " + file + ": " + why);
    }
    struct fd_closer {
        int fd;
        ~fd_closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
        throw error(errc::invalid_argument, "cannot read " + file + ": it is a directory, not a file of code");
    auto text = read_fd(fd, file);
    check_utf8(text, file);
    return text;
}

std::string read_token_file(const std::string& file) {
    auto text = read_input(file);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
    if (text.empty()) throw error(errc::invalid_argument, "the token file " + file + " is empty");
    if (text.find('\n') != std::string::npos)
        throw error(errc::invalid_argument, "the token file " + file + " holds more than one line");
    return text;
}

void check_seconds(const char* flag, double value, const char* zero_means) {
    if (std::isfinite(value) && value <= max_seconds && (value > 0 || (zero_means && value == 0))) return;
    char given[64];
    std::snprintf(given, sizeof given, "%g", value);
    throw error(errc::invalid_argument, std::string(flag) + " " + given + ": give a number of seconds from " +
                                            (zero_means ? std::string("0 (") + zero_means + ")" : "above 0") +
                                            " to 31536000 (a year)");
}

std::string seconds_of(double seconds) {
    char text[32];
    std::snprintf(text, sizeof text, "%g s", seconds);
    return text;
}

std::chrono::milliseconds milliseconds_of(double seconds) {
    return std::chrono::milliseconds(std::llround(seconds * 1000));
}

}  // namespace kernex::cli
