// The nbformat 4 model: parse and check the parts kernex touches, write in
// nbformat's own layout (what nbformat.write produces, so diffs stay small).
#include "kernex/notebook.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "confine/files.hpp"
#include "kernex/error.hpp"
#include "kernex/message.hpp"

namespace kernex {

namespace {

[[noreturn]] void invalid(std::string_view origin, const std::string& what) {
    throw error(errc::invalid_argument,
                std::string(origin) + " is not a valid nbformat 4 notebook: " + what);
}

// A multi-line field may be a string or a list of strings (nbformat splits
// lines on write); kernex keeps it joined.
void join_lines(json& field, std::string_view origin, const std::string& where) {
    if (field.is_string()) return;
    if (!field.is_array()) invalid(origin, where + " must be a string or a list of strings");
    std::string joined;
    for (const auto& part : field) {
        if (!part.is_string()) invalid(origin, where + " must be a string or a list of strings");
        joined += part.get_ref<const std::string&>();
    }
    field = std::move(joined);
}

bool is_json_mime(const std::string& mime) {
    return mime == "application/json" ||
           (mime.rfind("application/", 0) == 0 && mime.size() >= 5 && mime.compare(mime.size() - 5, 5, "+json") == 0);
}

void join_bundle(json& data, std::string_view origin, const std::string& where) {
    if (!data.is_object()) invalid(origin, where + " must be an object");
    for (auto& [mime, value] : data.items()) {
        if (is_json_mime(mime) || !value.is_array()) continue;
        bool all_strings = true;
        for (const auto& v : value) all_strings = all_strings && v.is_string();
        if (all_strings) join_lines(value, origin, where);
    }
}

bool valid_cell_id(const std::string& id) {
    if (id.empty() || id.size() > 64) return false;
    for (char c : id)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
    return true;
}

void check_output(json& out, std::string_view origin, const std::string& where) {
    if (!out.is_object() || !out.contains("output_type") || !out["output_type"].is_string())
        invalid(origin, where + " has no output_type");
    const auto type = out["output_type"].get<std::string>();
    if (type == "stream") {
        if (!out.contains("name") || !out["name"].is_string()) invalid(origin, where + " (stream) has no name");
        if (!out.contains("text")) invalid(origin, where + " (stream) has no text");
        join_lines(out["text"], origin, where + ".text");
    } else if (type == "display_data" || type == "execute_result") {
        if (!out.contains("data")) invalid(origin, where + " has no data");
        join_bundle(out["data"], origin, where + ".data");
        if (!out.contains("metadata") || !out["metadata"].is_object())
            invalid(origin, where + " has no metadata object");
    } else if (type == "error") {
        if (!out.contains("ename") || !out.contains("evalue") || !out.contains("traceback") ||
            !out["traceback"].is_array())
            invalid(origin, where + " (error) needs ename, evalue and a traceback list");
    } else {
        invalid(origin, where + " has an unknown output_type '" + type + "'");
    }
}

// Python's str.splitlines(keepends=True), which nbformat uses to split
// text on write: \n, \r\n, \r, \v, \f, \x1c-\x1e, U+0085, U+2028, U+2029.
json split_lines(const std::string& s) {
    json lines = json::array();
    std::size_t start = 0, i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t end = 0;  // one past the line break, 0 when none here
        if (c == '\r') end = (i + 1 < s.size() && s[i + 1] == '\n') ? i + 2 : i + 1;
        else if (c == '\n' || c == '\v' || c == '\f' || c == 0x1c || c == 0x1d || c == 0x1e) end = i + 1;
        else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x85) end = i + 2;
        else if (c == 0xe2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
                 (static_cast<unsigned char>(s[i + 2]) == 0xa8 || static_cast<unsigned char>(s[i + 2]) == 0xa9))
            end = i + 3;
        if (end) {
            lines.push_back(s.substr(start, end - start));
            start = i = end;
        } else {
            ++i;
        }
    }
    if (start < s.size()) lines.push_back(s.substr(start));
    return lines;
}

void split_field(json& field) {
    if (field.is_string()) field = split_lines(field.get_ref<const std::string&>());
}

void split_bundle(json& data) {
    if (!data.is_object()) return;
    for (auto& [mime, value] : data.items())
        if (mime.rfind("text/", 0) == 0 || mime == "application/javascript" || mime == "image/svg+xml")
            split_field(value);
}

}  // namespace

notebook::notebook()
    : m_doc{{"cells", json::array()}, {"metadata", json::object()}, {"nbformat", 4}, {"nbformat_minor", 5}} {}

notebook notebook::parse(std::string_view text, std::string_view origin) {
    notebook nb;
    try {
        nb.m_doc = json::parse(text);
    } catch (const json::exception& e) {
        invalid(origin, std::string("not JSON (") + e.what() + ")");
    }
    json& d = nb.m_doc;
    if (!d.is_object()) invalid(origin, "the top level is not an object");
    if (!d.contains("nbformat") || !d["nbformat"].is_number_integer() || d["nbformat"].get<int>() != 4)
        invalid(origin, "nbformat is not 4 (convert older notebooks with `jupyter nbconvert --to notebook`)");
    if (!d.contains("nbformat_minor") || !d["nbformat_minor"].is_number_integer() ||
        d["nbformat_minor"].get<int>() < 0)
        invalid(origin, "nbformat_minor is missing");
    if (!d.contains("metadata") || !d["metadata"].is_object()) invalid(origin, "metadata is not an object");
    if (!d.contains("cells") || !d["cells"].is_array()) invalid(origin, "cells is not a list");
    const bool ids = d["nbformat_minor"].get<int>() >= 5;
    std::size_t index = 0;
    for (auto& cell : d["cells"]) {
        const std::string where = "cell " + std::to_string(index++);
        if (!cell.is_object()) invalid(origin, where + " is not an object");
        if (!cell.contains("cell_type") || !cell["cell_type"].is_string())
            invalid(origin, where + " has no cell_type");
        const auto type = cell["cell_type"].get<std::string>();
        if (type != "code" && type != "markdown" && type != "raw")
            invalid(origin, where + " has an unknown cell_type '" + type + "'");
        if (!cell.contains("source")) invalid(origin, where + " has no source");
        join_lines(cell["source"], origin, where + ".source");
        if (!cell.contains("metadata") || !cell["metadata"].is_object())
            invalid(origin, where + " has no metadata object");
        if (cell["metadata"].contains("tags") && !cell["metadata"]["tags"].is_array())
            invalid(origin, where + " metadata.tags is not a list");
        if (ids && (!cell.contains("id") || !cell["id"].is_string() || !valid_cell_id(cell["id"].get<std::string>())))
            invalid(origin, where + " has no valid id (nbformat 4.5 cells need one)");
        if (cell.contains("attachments") && cell["attachments"].is_object())
            for (auto& [name, bundle] : cell["attachments"].items())
                join_bundle(bundle, origin, where + ".attachments." + name);
        if (type != "code") continue;
        if (!cell.contains("outputs") || !cell["outputs"].is_array()) invalid(origin, where + " has no outputs list");
        if (!cell.contains("execution_count") ||
            !(cell["execution_count"].is_null() || cell["execution_count"].is_number_integer()))
            invalid(origin, where + " has no execution_count (null or a number)");
        std::size_t o = 0;
        for (auto& out : cell["outputs"]) check_output(out, origin, where + ".outputs[" + std::to_string(o++) + "]");
    }
    return nb;
}

notebook notebook::read(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw error(errc::not_found, "cannot read notebook " + path.string() + ": " + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    return parse(text.str(), path.string());
}

std::string notebook::dump() const {
    json d = m_doc;
    // nbformat's strip_transient.
    d["metadata"].erase("orig_nbformat");
    d["metadata"].erase("orig_nbformat_minor");
    d["metadata"].erase("signature");
    for (auto& cell : d["cells"]) {
        cell["metadata"].erase("trusted");
        split_field(cell["source"]);
        if (cell.contains("attachments") && cell["attachments"].is_object())
            for (auto& [name, bundle] : cell["attachments"].items()) split_bundle(bundle);
        if (cell["cell_type"] != "code") continue;
        for (auto& out : cell["outputs"]) {
            const auto& type = out["output_type"];
            if (type == "execute_result" || type == "display_data") split_bundle(out["data"]);
            else if (type == "stream") split_field(out["text"]);
        }
    }
    return d.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

void notebook::write(const std::filesystem::path& path) const { notebook_destination(path).write(*this); }

int notebook::nbformat_minor() const { return m_doc.at("nbformat_minor").get<int>(); }

std::string notebook::kernel_name() const {
    const auto& md = m_doc.at("metadata");
    if (md.contains("kernelspec") && md["kernelspec"].is_object() && md["kernelspec"].contains("name") &&
        md["kernelspec"]["name"].is_string())
        return md["kernelspec"]["name"].get<std::string>();
    return {};
}

json notebook::new_cell(std::string_view cell_type, std::string source) const {
    json cell{{"cell_type", cell_type}, {"metadata", json::object()}, {"source", std::move(source)}};
    if (cell_type == "code") {
        cell["outputs"] = json::array();
        cell["execution_count"] = nullptr;
    }
    if (nbformat_minor() >= 5) cell["id"] = new_id().substr(0, 8) + new_id().substr(0, 8);
    return cell;
}

notebook_destination::notebook_destination(const std::filesystem::path& path) : m_path(path) {
    auto dir = path.parent_path();
    if (dir.empty()) dir = ".";
    m_name = path.filename().string();
    if (m_name.empty() || m_name == "." || m_name == "..")
        throw error(errc::invalid_argument, "cannot write a notebook to " + path.string() + ": not a file name");
    {
        auto fd = confine::open_dir(dir);
        m_dir_fd = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0);
        if (m_dir_fd < 0) throw error(errc::io_error, "cannot open " + dir.string() + ": " + std::strerror(errno));
    }
    struct stat st {};
    if (::fstatat(m_dir_fd, m_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
        ::close(m_dir_fd);
        throw error(errc::invalid_argument, "cannot write a notebook to " + path.string() + ": it is a directory");
    }
}

notebook_destination::notebook_destination(notebook_destination&& o) noexcept
    : m_path(std::move(o.m_path)), m_name(std::move(o.m_name)), m_dir_fd(o.m_dir_fd) {
    o.m_dir_fd = -1;
}

notebook_destination& notebook_destination::operator=(notebook_destination&& o) noexcept {
    if (this != &o) {
        if (m_dir_fd >= 0) ::close(m_dir_fd);
        m_path = std::move(o.m_path);
        m_name = std::move(o.m_name);
        m_dir_fd = o.m_dir_fd;
        o.m_dir_fd = -1;
    }
    return *this;
}

notebook_destination::~notebook_destination() {
    if (m_dir_fd >= 0) ::close(m_dir_fd);
}

void notebook_destination::write(const notebook& nb) const {
    const std::string text = nb.dump();
    // A new file made by confine (O_CREAT|O_EXCL, nothing followed), then
    // renamed over the name: what stands at the name is replaced, never
    // opened, and readers see the old notebook or the new one, whole.
    const std::string tmp = "." + m_name + ".kernex-" + new_id().substr(0, 8) + ".tmp";
    auto file = confine::create_beneath(m_dir_fd, tmp, {.mode = 0666, .make_parents = false});
    std::size_t done = 0;
    int err = 0;
    while (done < text.size() && !err) {
        ssize_t n = ::write(file.fd.get(), text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) err = n < 0 ? errno : EIO;
        else done += static_cast<std::size_t>(n);
    }
    file.fd.reset();
    if (!err && ::renameat(m_dir_fd, file.name.c_str(), m_dir_fd, m_name.c_str()) != 0) err = errno;
    if (err) {
        ::unlinkat(m_dir_fd, file.name.c_str(), 0);
        throw error(errc::io_error, "cannot write " + m_path.string() + ": " + std::strerror(err));
    }
}

}  // namespace kernex
