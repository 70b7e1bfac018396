#include "docker/containers.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "docker/exec_stream.hpp"
#include "docker/nosuid_bind.hpp"
#include "kernex/error.hpp"
#include "process/remove_tree.hpp"

namespace kernex::docker {

void check_limits(const container_limits& limits) {
    if (limits.cpus && !(*limits.cpus > 0 && *limits.cpus <= 1024))
        throw error(errc::invalid_argument, "cpus must be a positive number of CPUs");
}

std::string daemon_message(const docker_response& response) {
    const auto parsed = nlohmann::json::parse(response.body, nullptr, false);
    if (parsed.is_object() && parsed.contains("message") && parsed["message"].is_string())
        return parsed["message"].get<std::string>();
    std::string text = response.body.substr(0, 500);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return text;
}

std::string random_hex(std::size_t digits) {
    static constexpr char hex[] = "0123456789abcdef";
    std::random_device device;
    std::string out;
    while (out.size() < digits) {
        unsigned value = device();
        for (int i = 0; i < 8 && out.size() < digits; ++i, value >>= 4) out += hex[value & 0xf];
    }
    return out;
}

std::string create_container(docker_client& client, const container_config& config) {
    check_limits(config.limits);
    nlohmann::json host_config = {
        {"Binds", config.binds},
        {"NetworkMode", config.network_mode},
    };
    if (config.init) host_config["Init"] = true;
    if (config.no_logs) host_config["LogConfig"] = {{"Type", "none"}, {"Config", nlohmann::json::object()}};
    for (const auto& [target, options] : config.tmpfs_volumes) {
        const nlohmann::json driver = {{"Name", "local"},
                                       {"Options", {{"type", "tmpfs"}, {"device", "tmpfs"}, {"o", options}}}};
        host_config["Mounts"].push_back(
            {{"Type", "volume"}, {"Target", target}, {"VolumeOptions", {{"DriverConfig", driver}}}});
    }
    // Confinement (docs/security.md): no capability (so no device node,
    // no chown to another user, no raw socket), no privilege from setuid
    // bits, a read-only root with a private tmpfs /tmp. The Engine API
    // cannot make the work dir's bind nosuid,nodev (nosuid_bind.hpp does
    // where it can); dropping CAP_MKNOD and the non-root user are what keep
    // device nodes and setuid-root files out of it everywhere (and the
    // executor clears setuid bits a root user sets).
    host_config["CapDrop"] = {"ALL"};
    if (!config.confinement.cap_add.empty()) host_config["CapAdd"] = config.confinement.cap_add;
    if (config.confinement.no_new_privileges) host_config["SecurityOpt"] = {"no-new-privileges"};
    if (config.confinement.read_only) {
        host_config["ReadonlyRootfs"] = true;
        host_config["Tmpfs"] = {{"/tmp", "rw,nosuid,nodev,exec,mode=1777"}};
    }
    if (config.limits.memory) {
        host_config["Memory"] = *config.limits.memory;
        host_config["MemorySwap"] = *config.limits.memory;  // no swap beyond the limit
    }
    if (config.limits.cpus)
        host_config["NanoCpus"] = static_cast<std::int64_t>(std::llround(*config.limits.cpus * 1e9));
    if (config.limits.pids_limit) host_config["PidsLimit"] = *config.limits.pids_limit;
    nlohmann::json exposed = nlohmann::json::object();
    if (!config.published_ports.empty()) {
        nlohmann::json bindings = nlohmann::json::object();
        for (auto port : config.published_ports) {
            const std::string key = std::to_string(port) + "/tcp";
            exposed[key] = nlohmann::json::object();
            bindings[key] = {{{"HostIp", "127.0.0.1"}, {"HostPort", std::to_string(port)}}};
        }
        host_config["PortBindings"] = bindings;
    }
    nlohmann::json body = {
        {"Image", config.image},
        {"Entrypoint", nlohmann::json::array()},  // the image's entrypoint would wrap our command
        {"Cmd", config.cmd},
        {"WorkingDir", config.working_dir},
        {"Labels", config.labels},
        {"HostConfig", host_config},
    };
    if (!config.env.empty()) body["Env"] = config.env;
    if (config.open_stdin) {
        body["OpenStdin"] = true;
        body["StdinOnce"] = true;
        body["AttachStdin"] = true;
    }
    if (!exposed.empty()) body["ExposedPorts"] = exposed;
    if (!config.user.empty()) body["User"] = config.user;

    const docker_response created = client.request("POST", "/containers/create?name=" + config.name, body.dump());
    if (created.status == 404)
        throw error(errc::not_found, "the image '" + config.image + "' is not in the Docker daemon at " +
                                         client.host() + " (" + daemon_message(created) +
                                         "). kernex does not pull images: get it with `docker pull " + config.image +
                                         "` (or build it, or `docker import ROOTFS.tar " + config.image +
                                         "`) and try again");
    if (created.status == 409)
        throw error(errc::docker_error, "a container named '" + config.name + "' already exists in the Docker daemon at " +
                                            client.host() + ": choose another container_name, or remove it");
    if (created.status != 201)
        throw error(errc::docker_error, "the Docker daemon at " + client.host() + " could not create a container from '" +
                                            config.image + "': " + daemon_message(created));
    const auto parsed = nlohmann::json::parse(created.body, nullptr, false);
    if (!parsed.is_object() || !parsed.contains("Id") || !parsed["Id"].is_string())
        throw error(errc::docker_error, "the Docker daemon at " + client.host() + " created a container without an id");
    return parsed["Id"].get<std::string>();
}

void start_container(docker_client& client, const std::string& id, const std::string& image, std::string_view hint) {
    const docker_response started = client.request("POST", "/containers/" + id + "/start");
    if (started.status == 204 || started.status == 304) return;
    throw error(started.status == 404 ? errc::not_found : errc::docker_error,
                "the Docker daemon at " + client.host() + " could not start a container from '" + image +
                    "': " + daemon_message(started) + " (" + std::string(hint) + ")");
}

bool remove_container(docker_client& client, const std::string& id) noexcept {
    if (id.empty()) return true;
    try {
        const docker_response r = client.request("DELETE", "/containers/" + id + "?force=true&v=true");
        return r.status == 204 || r.status == 404;  // removed now, or before
    } catch (...) {
        return false;  // the daemon did not answer: the container may still be there
    }
}

std::string container_logs(docker_client& client, const std::string& id, std::size_t max_bytes) noexcept {
    try {
        const docker_response r = client.request("GET", "/containers/" + id + "/logs?stdout=1&stderr=1&tail=200");
        if (r.status != 200) return {};
        std::string text;
        exec_stream_demuxer demuxer;
        demuxer.feed(r.body, [&](docker_stream stream, std::string_view data) {
            if (stream == docker_stream::standard_output || stream == docker_stream::standard_error) text.append(data);
        });
        return text.size() > max_bytes ? text.substr(text.size() - max_bytes) : text;
    } catch (...) {
        return {};
    }
}

namespace {

namespace fs = std::filesystem;

constexpr const char* label_pid = "org.kernex.owner.pid";
constexpr const char* label_start = "org.kernex.owner.start";
constexpr const char* label_boot = "org.kernex.owner.boot";
constexpr const char* label_pidns = "org.kernex.owner.pidns";
constexpr const char* label_dirs = "org.kernex.temp_dirs";
constexpr const char* label_mount_points = "org.kernex.mount_points";

std::string first_line(const fs::path& file) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);
    return line;
}

std::string boot_id() { return first_line("/proc/sys/kernel/random/boot_id"); }

std::string pid_namespace() {
    std::error_code ec;
    return fs::read_symlink("/proc/self/ns/pid", ec).string();
}

// A temporary dir a dead kernex named: removed only when it is one kernex
// makes (kernex-* or docker-*), a real directory (not a link) and ours.
void remove_temp_dir(const std::string& path) noexcept {
    const fs::path dir(path);
    const std::string name = dir.filename().string();
    if (!dir.is_absolute() || !(name.starts_with("kernex-") || name.starts_with("docker-"))) return;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) return;
    detail::remove_tree(path.c_str());  // dirs the code made read-only or unreadable too
}

}  // namespace

std::string process_start_time(const std::string& pid) {
    const std::string stat = first_line("/proc/" + pid + "/stat");
    const auto close = stat.rfind(')');  // the name in parentheses may hold spaces
    if (close == std::string::npos) return {};
    std::istringstream fields(stat.substr(close + 2));
    std::string field;
    for (int i = 3; i <= 22 && fields >> field; ++i) {}  // fields 3..22
    return field;
}

std::size_t clear_setuid_bits(const fs::path& dir) noexcept {
    std::size_t cleared = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
        const fs::file_status st = it->symlink_status(ec);
        if (ec) {
            ec.clear();
            continue;
        }
        if (st.type() != fs::file_type::regular) continue;
        if ((st.permissions() & (fs::perms::set_uid | fs::perms::set_gid)) == fs::perms::none) continue;
        fs::permissions(it->path(), fs::perms::set_uid | fs::perms::set_gid,
                        fs::perm_options::remove | fs::perm_options::nofollow, ec);
        if (!ec) ++cleared;
        ec.clear();
    }
    return cleared;
}

std::string url_encode(std::string_view text) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

std::map<std::string, std::string> owner_labels(const std::vector<std::string>& temp_dirs,
                                                const std::vector<std::string>& mount_points) {
    const std::string pid = std::to_string(::getpid());
    std::map<std::string, std::string> labels = {
        {label_pid, pid}, {label_start, process_start_time(pid)}, {label_boot, boot_id()}, {label_pidns, pid_namespace()}};
    if (!temp_dirs.empty()) labels[label_dirs] = nlohmann::json(temp_dirs).dump();
    if (!mount_points.empty()) labels[label_mount_points] = nlohmann::json(mount_points).dump();
    return labels;
}

int sweep_orphans(docker_client& client, bool* complete) noexcept {
    int removed = 0;
    if (complete) *complete = false;
    try {
        const std::string boot = boot_id();
        const std::string pidns = pid_namespace();
        if (boot.empty()) return 0;
        const nlohmann::json filters = {{"label", {std::string(label_boot) + "=" + boot}}};
        const auto list = client.call("GET", "/containers/json?all=1&filters=" + url_encode(filters.dump()));
        if (!list.is_array()) return 0;
        bool all_removed = true;
        for (const auto& c : list) {
            const auto labels = c.value("Labels", nlohmann::json::object());
            if (!labels.is_object() || labels.value(label_pidns, "") != pidns) continue;
            const std::string pid = labels.value(label_pid, "");
            const std::string start = labels.value(label_start, "");
            if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
            if (!start.empty() && process_start_time(pid) == start) continue;  // its kernex lives
            if (!remove_container(client, c.value("Id", ""))) {
                all_removed = false;  // tried again at the next sweep, with what it binds
                continue;
            }
            ++removed;
            const auto points = nlohmann::json::parse(labels.value(label_mount_points, "[]"), nullptr, false);
            if (points.is_array())
                for (const auto& p : points)
                    if (p.is_string() && fs::path(p.get<std::string>()).filename().string().starts_with("kernex-mount-"))
                        remove_mount_point(p.get<std::string>().c_str());
            const auto dirs = nlohmann::json::parse(labels.value(label_dirs, "[]"), nullptr, false);
            if (dirs.is_array())
                for (const auto& d : dirs)
                    if (d.is_string()) remove_temp_dir(d.get<std::string>());
        }
        if (complete) *complete = all_removed;
    } catch (...) {
        // A sweep is a courtesy: the daemon's trouble shows in what follows.
    }
    return removed;
}

}  // namespace kernex::docker
