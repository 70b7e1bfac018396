// Saving rich outputs (images, HTML) to files, and small text helpers for
// showing outputs to people and agents.
#include "kernex/output_files.hpp"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "confine/files.hpp"
#include "kernex/error.hpp"

namespace kernex {

namespace {

struct file_type {
    const char* mime;
    const char* extension;
    bool base64;
};
constexpr std::array<file_type, 4> file_types{{
    {"image/png", "png", true},
    {"image/jpeg", "jpg", true},
    {"image/svg+xml", "svg", false},
    {"text/html", "html", false},
}};

int base64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// Jupyter allows a MIME bundle value to be a string or a list of strings.
std::string text_of(const nlohmann::json& value) {
    if (value.is_string()) return value.get<std::string>();
    std::string out;
    if (value.is_array())
        for (const auto& part : value)
            if (part.is_string()) out += part.get<std::string>();
    return out;
}

// dir (a path the user gave, created when missing) as the fd files are
// created beneath. Throws kernex::error(io_error) when it cannot be opened.
confine::unique_fd open_output_dir(const std::filesystem::path& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);  // a failure is said by open_dir
    return confine::open_dir(dir);
}

}  // namespace

std::string base64_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size() * 3 / 4);
    unsigned buffer = 0;
    int bits = 0;
    bool padding = false;
    for (unsigned char c : text) {
        if (c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
        if (c == '=') {
            padding = true;
            continue;
        }
        int v = base64_value(c);
        if (v < 0 || padding) throw error(errc::protocol_error, "invalid base64 in an output");
        buffer = (buffer << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
        }
    }
    return out;
}

std::string base64_encode(std::string_view bytes) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < bytes.size(); i += 3) {
        const unsigned v = static_cast<unsigned char>(bytes[i]) << 16 | static_cast<unsigned char>(bytes[i + 1]) << 8 |
                           static_cast<unsigned char>(bytes[i + 2]);
        for (int shift : {18, 12, 6, 0}) out.push_back(alphabet[(v >> shift) & 63]);
    }
    if (const std::size_t rest = bytes.size() - i; rest > 0) {
        unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
        if (rest == 2) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
        out.push_back(alphabet[(v >> 18) & 63]);
        out.push_back(alphabet[(v >> 12) & 63]);
        out.push_back(rest == 2 ? alphabet[(v >> 6) & 63] : '=');
        out.push_back('=');
    }
    return out;
}

std::string strip_ansi(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\x1b') {
            out.push_back(text[i]);
            continue;
        }
        // CSI: ESC [ parameters... final byte in @-~
        if (i + 1 < text.size() && text[i + 1] == '[') {
            std::size_t j = i + 2;
            while (j < text.size() && !(text[j] >= '@' && text[j] <= '~')) ++j;
            i = j;
        } else {
            ++i;  // a two-byte escape
        }
    }
    return out;
}

std::string saved_output_line(const std::filesystem::path& file) {
    std::string mime = "a file";
    for (const auto& t : file_types)
        if (file.extension() == "." + std::string(t.extension)) mime = t.mime;
    return "[saved " + mime + " to " + file.string() + "]";
}

std::optional<std::string> text_form(const nlohmann::json& data) {
    if (!data.is_object()) return std::nullopt;
    std::optional<std::string> plain;
    if (auto it = data.find("text/plain"); it != data.end() && it->is_string()) plain = it->get<std::string>();
    // "<IPython.core.display.Markdown object>", "<__main__.T at 0x7f...>": a repr that says nothing.
    const bool says_nothing = plain && plain->size() > 2 && plain->front() == '<' &&
                              (plain->ends_with(" object>") || plain->find(" at 0x") != std::string::npos) &&
                              plain->find('\n') == std::string::npos;
    if (plain && !says_nothing) return plain;
    for (const char* mime : {"text/markdown", "text/latex"})
        if (auto it = data.find(mime); it != data.end() && it->is_string()) return it->get<std::string>();
    for (const auto& [mime, value] : data.items()) {
        if (mime == "application/json" || (mime.size() > 5 && mime.ends_with("+json"))) return value.dump(2);
        if (mime.starts_with("text/") && mime != "text/plain" && mime != "text/html" && value.is_string())
            return value.get<std::string>();
    }
    return plain;
}

bool has_file_output(const nlohmann::json& data) {
    for (const auto& t : file_types)
        if (data.contains(t.mime)) return true;
    return false;
}

std::vector<std::filesystem::path> save_output_files(const nlohmann::json& data, const std::filesystem::path& dir,
                                                     const std::string& stem) {
    std::vector<std::filesystem::path> written;
    confine::unique_fd dir_fd;
    for (const auto& t : file_types) {
        auto it = data.find(t.mime);
        if (it == data.end()) continue;
        const auto bytes = t.base64 ? base64_decode(text_of(*it)) : text_of(*it);
        if (!dir_fd) dir_fd = open_output_dir(dir);
        // The dir may be the kernel's work dir: a new file beneath its fd,
        // never through a link or a FIFO planted at the name, never over
        // what is there (a taken name gets "-2", "-3").
        const std::string used = confine::write_beneath(dir_fd.get(), stem + "." + t.extension, bytes,
                                                        {.mode = 0644, .make_parents = false});
        written.push_back(dir / used);
    }
    return written;
}

full_output_file::full_output_file(const std::filesystem::path& dir, std::string_view name) {
    const confine::unique_fd dir_fd = open_output_dir(dir);
    confine::created_file file = confine::create_beneath(dir_fd.get(), name, {.mode = 0600, .make_parents = false});
    m_path = dir / file.name;
    m_fd = file.fd.release();
}

full_output_file::~full_output_file() {
    if (m_fd >= 0) ::close(m_fd);
}

void full_output_file::write(std::string_view text) noexcept {
    while (m_fd >= 0 && !text.empty()) {
        const ssize_t n = ::write(m_fd, text.data(), text.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            m_error = std::strerror(n < 0 ? errno : ENOSPC);
            ::close(m_fd);
            m_fd = -1;
            return;
        }
        text.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace kernex
