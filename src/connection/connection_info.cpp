// Connection files in jupyter_client's format, written so that the key is
// never readable by anyone but the owner, not even for an instant.
#include "kernex/connection.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "connection/private_dirs.hpp"
#include "kernex/error.hpp"
#include "kernex/kernelspec.hpp"

namespace fs = std::filesystem;

namespace kernex {
namespace {

using json = nlohmann::json;

// jupyter_client's order, so files kernex writes read like the ones it writes.
constexpr const char* port_fields[] = {"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"};
constexpr std::uint16_t connection_info::*port_members[] = {
    &connection_info::shell_port, &connection_info::iopub_port, &connection_info::stdin_port,
    &connection_info::control_port, &connection_info::hb_port};

[[noreturn]] void bad_field(const std::string& source, const char* field, const std::string& what) {
    throw error(errc::invalid_argument, source + ": field \"" + field + "\" " + what);
}

const json& required(const json& j, const char* field, const std::string& source) {
    auto it = j.find(field);
    if (it == j.end()) bad_field(source, field, "is missing");
    return *it;
}

std::string string_field(const json& value, const char* field, const std::string& source) {
    if (!value.is_string()) bad_field(source, field, std::string("must be a string, not ") + value.type_name());
    return value.get<std::string>();
}

std::string optional_string(const json& j, const char* field, const std::string& source, std::string fallback) {
    auto it = j.find(field);
    return it == j.end() ? fallback : string_field(*it, field, source);
}

// Port 0 would mean "let the kernel choose", but then no client could find
// the socket: a connection file must say where the kernel listens.
std::uint16_t port_field(const json& j, const char* field, const std::string& source) {
    const json& value = required(j, field, source);
    if (!value.is_number_integer())
        bad_field(source, field, std::string("must be an integer port, not ") + value.type_name() +
                                     (value.is_number() || value.is_string() ? " " + value.dump() : ""));
    if (value.is_number_unsigned() && value.get<std::uint64_t>() >= 1 && value.get<std::uint64_t>() <= 65535)
        return static_cast<std::uint16_t>(value.get<std::uint64_t>());
    bad_field(source, field, "must be a port between 1 and 65535, not " + value.dump());
}


[[noreturn]] void io_failure(const std::string& what, const fs::path& path, int err) {
    throw error(errc::io_error, what + " " + path.string() + ": " + std::strerror(err));
}

// Removes the temporary file unless the rename made it the real one.
struct temp_file_guard {
    fs::path path;
    bool keep = false;
    ~temp_file_guard() {
        if (!keep) ::unlink(path.c_str());
    }
};

void write_all(int fd, const std::string& text, const fs::path& path) {
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) io_failure("cannot write", path, errno);
        done += static_cast<std::size_t>(n);
    }
}

}  // namespace

std::string connection_info::endpoint(std::uint16_t port) const {
    if (transport == "ipc") return "ipc://" + ip + "-" + std::to_string(port);
    // ZeroMQ wants IPv6 literals bracketed.
    bool ipv6 = ip.find(':') != std::string::npos && !ip.starts_with('[');
    return transport + "://" + (ipv6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

json connection_info::to_json() const {
    return {{"shell_port", shell_port},   {"iopub_port", iopub_port}, {"stdin_port", stdin_port},
            {"control_port", control_port}, {"hb_port", hb_port},     {"ip", ip},
            {"key", key},                 {"transport", transport},   {"signature_scheme", signature_scheme},
            {"kernel_name", kernel_name}};
}

connection_info connection_info::from_json(const json& j, const std::string& source) {
    if (!j.is_object()) throw error(errc::invalid_argument, source + ": must be a JSON object, not " +
                                                                std::string(j.type_name()));
    connection_info info;
    for (int i = 0; i < 5; ++i) info.*port_members[i] = port_field(j, port_fields[i], source);

    info.ip = string_field(required(j, "ip", source), "ip", source);
    if (info.ip.empty()) bad_field(source, "ip", "is empty");
    info.key = string_field(required(j, "key", source), "key", source);

    // jupyter_client accepts the transport in any case.
    const std::string transport = string_field(required(j, "transport", source), "transport", source);
    info.transport = transport;
    for (char& c : info.transport) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (info.transport != "tcp" && info.transport != "ipc")
        bad_field(source, "transport", "must be \"tcp\" or \"ipc\", not \"" + transport + "\"");

    // Older clients wrote neither; these are jupyter_client's defaults.
    info.signature_scheme = optional_string(j, "signature_scheme", source, "hmac-sha256");
    info.kernel_name = optional_string(j, "kernel_name", source, "");
    return info;
}

connection_info read_connection_file(const fs::path& path) {
    const std::string source = "connection file " + path.string();
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR) throw error(errc::not_found, source + " does not exist");
        throw error(errc::io_error, "cannot read " + source + ": " + std::strerror(err));
    }
    json j;
    try {
        j = json::parse(in);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number too large
        throw error(errc::invalid_argument, source + ": not valid JSON: " + e.what());
    }
    return connection_info::from_json(j, source);
}

void write_connection_file(const fs::path& path, const connection_info& info) {
    // Refuse to write what read_connection_file would reject.
    const connection_info checked = connection_info::from_json(info.to_json(), "connection file " + path.string());

    nlohmann::ordered_json out;
    for (int i = 0; i < 5; ++i) out[port_fields[i]] = checked.*port_members[i];
    out["ip"] = checked.ip;
    out["key"] = checked.key;
    out["transport"] = checked.transport;
    out["signature_scheme"] = checked.signature_scheme;
    out["kernel_name"] = checked.kernel_name;
    const std::string text = out.dump(2);

    const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
    create_private_dirs(dir);

    // The temporary name is unpredictable and O_EXCL|O_NOFOLLOW, so nobody can
    // plant a file or symlink there to read the key.
    temp_file_guard temp{dir / ("." + path.filename().string() + "." + random_key().substr(0, 16) + ".tmp")};
    int fd = ::open(temp.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        temp.keep = true;  // not ours to remove
        io_failure("cannot create", temp.path, errno);
    }
    try {
        // The umask can only take bits away from 0600; put the owner's back.
        if (::fchmod(fd, 0600) != 0) io_failure("cannot set mode 0600 on", temp.path, errno);
        write_all(fd, text, temp.path);
    } catch (...) {
        ::close(fd);
        throw;
    }
    if (::close(fd) != 0) io_failure("cannot write", temp.path, errno);
    if (::rename(temp.path.c_str(), path.c_str()) != 0) io_failure("cannot write", path, errno);
    temp.keep = true;
    // No fsync of the file or the dir: the rename makes the whole file appear
    // at once to every reader, which is all a connection file needs. It
    // describes a running kernel, which a crash of the machine ends too, so
    // durability would buy nothing, and the two syncs cost about 0.9 ms of
    // every kernel start on ext4 (docs/benchmarks.md).
}

fs::path jupyter_runtime_dir() {
    if (const char* dir = std::getenv("JUPYTER_RUNTIME_DIR"); dir && *dir) return dir;
    return jupyter_data_dir() / "runtime";
}

fs::path find_connection_file(const std::string& name) {
    std::error_code ec;
    if (name.empty()) throw error(errc::invalid_argument, "no connection file given");
    if (fs::exists(name, ec)) return name;
    const fs::path runtime = jupyter_runtime_dir();
    const bool bare = name.find('/') == std::string::npos;
    if (bare && fs::exists(runtime / name, ec)) return runtime / name;
    // jupyter_client's glob *NAME*: "abc" or "kernel-abc" for kernel-abc....json.
    std::vector<fs::path> matches;
    if (bare)
        for (fs::directory_iterator it(runtime, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string file = it->path().filename().string();
            // `kernex kernel start`'s records (kernex-kernel-ID.json) hold
            // the same ID but are not connection files.
            if (file.starts_with("kernex-kernel-")) continue;
            if (file.ends_with(".json") && file.find(name) != std::string::npos) matches.push_back(it->path());
        }
    if (matches.size() == 1) return matches.front();
    if (matches.empty())
        throw error(errc::not_found, "no connection file '" + name + "' here or in the Jupyter runtime dir " +
                                         runtime.string() + " (give the path `kernex kernel start` or `jupyter kernel` printed)");
    std::string names;
    for (const fs::path& m : matches) names += "\n  " + m.string();
    throw error(errc::invalid_argument, "'" + name + "' matches several connection files in " + runtime.string() +
                                            "; give one of them:" + names);
}

}  // namespace kernex
