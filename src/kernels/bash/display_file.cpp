#include "display_file.hpp"

#include "utf8.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace kernex::bash {

namespace {

// Large enough for any plot, small enough to keep a notebook usable.
constexpr std::uintmax_t max_display_bytes = 64u * 1024 * 1024;

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

std::string lower_extension(const std::string& path) {
    std::string ext = std::filesystem::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return ext;
}

// An SVG file may start with an XML declaration, a doctype or comments.
bool looks_like_svg(std::string_view bytes) {
    std::string head(bytes.substr(0, 4096));
    std::transform(head.begin(), head.end(), head.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return head.find("<svg") != std::string::npos;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        const auto n = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += alphabet[(n >> 6) & 63];
        out += alphabet[n & 63];
    }
    const std::size_t rest = bytes.size() - i;
    if (rest > 0) {
        unsigned n = static_cast<unsigned char>(bytes[i]) << 16;
        if (rest == 2) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += rest == 2 ? alphabet[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

display_content load_display_file(const std::string& path) {
    display_content result;
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) {
        result.error = path + ": " + ec.message();
        return result;
    }
    if (size > max_display_bytes) {
        result.error = path + ": too large to display (" + std::to_string(size) + " bytes)";
        return result;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        result.error = path + ": " + std::strerror(errno);
        return result;
    }
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string name = std::filesystem::path(path).filename().string();
    const std::string ext = lower_extension(path);

    std::string mime;
    bool binary = true;
    if (starts_with(bytes, "\x89PNG\r\n\x1a\n")) {
        mime = "image/png";
    } else if (starts_with(bytes, "\xFF\xD8\xFF")) {
        mime = "image/jpeg";
    } else if (starts_with(bytes, "GIF87a") || starts_with(bytes, "GIF89a")) {
        mime = "image/gif";
    } else if (ext == ".svg" || (ext != ".html" && ext != ".htm" && looks_like_svg(bytes))) {
        mime = "image/svg+xml";
        binary = false;
    } else if (ext == ".html" || ext == ".htm") {
        mime = "text/html";
        binary = false;
    } else {
        result.error = path + ": not a PNG, JPEG, GIF, SVG or HTML file";
        return result;
    }
    result.data[mime] = binary ? base64_encode(bytes) : sanitize(bytes);
    // Front ends without the rich type still say what was there.
    result.data["text/plain"] = sanitize("<" + mime + ": " + name + ", " +
                                         std::to_string(bytes.size()) + " bytes>");
    return result;
}

}  // namespace kernex::bash
