#include "cli/kernel_records.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "kernex/connection.hpp"
#include "kernex/error.hpp"

namespace kernex::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr std::string_view record_prefix = "kernex-kernel-";
constexpr std::string_view record_suffix = ".json";
constexpr std::size_t max_record_bytes = 64 * 1024;
// How long `kernel stop` waits for `kernel start` to shut its kernel down
// (shutdown_request, then SIGTERM, then SIGKILL take a few seconds at most).
constexpr auto stop_wait = std::chrono::seconds(30);

// Field 22 of /proc/PID/stat: when the process started, in clock ticks
// after boot. nullopt when there is no such process (or it cannot be read).
std::optional<std::uint64_t> start_time(int pid) {
    if (pid <= 0) return std::nullopt;
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    // The command name (field 2) is in parentheses and may hold anything.
    const auto close = text.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::istringstream rest(text.substr(close + 1));
    std::string field;
    for (int i = 3; i <= 22; ++i)
        if (!(rest >> field)) return std::nullopt;
    try {
        return std::stoull(field);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

bool process_exists(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// True when pid is a `kernex kernel start` that started at `started`: the
// process the record names, not another one that reuses its pid, nor one a
// hand-written record points at.
bool is_kernel_start(int pid, std::uint64_t started) {
    if (start_time(pid) != started) return false;
    const std::string proc = "/proc/" + std::to_string(pid);
    std::error_code ec;
    const auto exe = fs::read_symlink(proc + "/exe", ec).filename().string();
    if (ec || (exe != "kernex" && exe != "kernex (deleted)")) return false;
    std::ifstream f(proc + "/cmdline");
    std::vector<std::string> argv;
    for (std::string arg; std::getline(f, arg, '\0');) argv.push_back(arg);
    for (std::size_t i = 1; i + 1 < argv.size(); ++i)
        if (argv[i] == "kernel" && argv[i + 1] == "start") return true;
    return false;
}

struct record {
    fs::path file;
    std::string id;
    fs::path connection_file;
    std::string kernel_name;
    int kernel_pid = -1;
    int kernex_pid = -1;
    std::uint64_t kernex_started = 0;
    bool running = false;  // its `kernel start` still runs
};

std::optional<json> read_record_file(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return std::nullopt;
    std::string text(max_record_bytes + 1, '\0');
    const ssize_t n = ::read(fd, text.data(), text.size());
    ::close(fd);
    if (n <= 0 || static_cast<std::size_t>(n) > max_record_bytes) return std::nullopt;
    text.resize(static_cast<std::size_t>(n));
    auto j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    return j;
}

// Every record in the runtime dir, sorted by id. One that cannot be read is
// listed as stale, with what its name says.
std::vector<record> read_records() {
    std::vector<record> records;
    std::error_code ec;
    for (fs::directory_iterator it(jupyter_runtime_dir(), ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (!name.starts_with(record_prefix) || !name.ends_with(record_suffix)) continue;
        record r;
        r.file = it->path();
        r.id = name.substr(record_prefix.size(), name.size() - record_prefix.size() - record_suffix.size());
        if (auto j = read_record_file(r.file)) {
            try {
                r.connection_file = j->at("connection_file").get<std::string>();
                r.kernel_name = j->at("kernel_name").get<std::string>();
                r.kernel_pid = j->at("kernel_pid").get<int>();
                r.kernex_pid = j->at("kernex_pid").get<int>();
                r.kernex_started = j->at("kernex_started").get<std::uint64_t>();
                r.running = is_kernel_start(r.kernex_pid, r.kernex_started);
            } catch (const json::exception&) {
                r.running = false;
            }
        }
        records.push_back(std::move(r));
    }
    std::sort(records.begin(), records.end(), [](const record& a, const record& b) { return a.id < b.id; });
    return records;
}

json to_json(const record& r) {
    return {{"id", r.id},
            {"connection_file", r.connection_file.string()},
            {"kernel_name", r.kernel_name},
            {"pid", r.kernel_pid},
            {"kernex_pid", r.kernex_pid},
            {"alive", r.running && process_exists(r.kernel_pid)}};
}

// Removes a stale record, and its connection file unless its kernel still
// runs (someone may still be using it). Says what it did on stderr.
void prune(const record& r) {
    std::error_code ec;
    std::string what = "kernex: removed the stale record of kernel " + r.id;
    if (!r.connection_file.empty() && fs::is_regular_file(fs::symlink_status(r.connection_file, ec))) {
        if (process_exists(r.kernel_pid))
            what += " (its connection file is kept: pid " + std::to_string(r.kernel_pid) + " still runs)";
        else if (fs::remove(r.connection_file, ec))
            what += " and its connection file " + r.connection_file.string();
    }
    fs::remove(r.file, ec);
    std::cerr << what << "\n";
}

int list_kernels(bool as_json, bool prune_stale) {
    auto records = read_records();
    if (prune_stale) {
        std::erase_if(records, [](const record& r) {
            if (r.running) return false;
            prune(r);
            return true;
        });
    }
    if (as_json) {
        json list = json::array();
        for (const auto& r : records) list.push_back(to_json(r));
        std::cout << json{{"kernels", list}}.dump(2) << "\n";
        return 0;
    }
    if (records.empty()) {
        std::cerr << "kernex: no kernels started by `kernex kernel start` on this machine\n";
        return 0;
    }
    std::size_t id_width = 2, name_width = 6;
    for (const auto& r : records) {
        id_width = std::max(id_width, r.id.size());
        name_width = std::max(name_width, r.kernel_name.size());
    }
    auto pad = [](std::string s, std::size_t width) { return s + std::string(width + 2 - std::min(width, s.size()), ' '); };
    std::cout << pad("ID", id_width) << pad("KERNEL", name_width) << pad("PID", 7) << pad("ALIVE", 5)
              << "CONNECTION FILE\n";
    bool stale = false;
    for (const auto& r : records) {
        const bool alive = to_json(r)["alive"].get<bool>();
        stale = stale || !r.running;
        std::cout << pad(r.id, id_width) << pad(r.kernel_name.empty() ? "?" : r.kernel_name, name_width)
                  << pad(r.kernel_pid > 0 ? std::to_string(r.kernel_pid) : "?", 7) << pad(alive ? "yes" : "no", 5)
                  << r.connection_file.string() << "\n";
    }
    if (stale) std::cerr << "kernex: kernels not alive are stale records; `kernex kernel list --prune` removes them\n";
    return 0;
}

// The record `what` names: an id, a unique start of one, or a connection file.
const record& find_record(const std::vector<record>& records, const std::string& what) {
    for (const auto& r : records)
        if (r.id == what) return r;
    std::error_code ec;
    const auto as_path = fs::weakly_canonical(what, ec);
    for (const auto& r : records)
        if (!ec && !r.connection_file.empty() && fs::weakly_canonical(r.connection_file, ec) == as_path) return r;
    const record* found = nullptr;
    for (const auto& r : records)
        if (r.id.starts_with(what)) {
            if (found) throw error(errc::invalid_argument, "'" + what + "' starts more than one kernel id; give more of it");
            found = &r;
        }
    if (!found)
        throw error(errc::not_found, "no kernel started by `kernex kernel start` is '" + what +
                                         "'; `kernex kernel list` shows their ids and connection files");
    return *found;
}

// Asks the `kernel start` process to shut its kernel down (SIGTERM, as
// Ctrl-C would) and waits until it has. A pidfd pins the process: the
// signal cannot reach another one that took its pid meanwhile.
void stop_kernel(const record& r) {
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, r.kernex_pid, 0));
    if (pidfd < 0 || !is_kernel_start(r.kernex_pid, r.kernex_started)) {
        if (pidfd >= 0) ::close(pidfd);
        throw error(errc::not_found, "kernel " + r.id + " is not running (the `kernex kernel start` that ran it, pid " +
                                         std::to_string(r.kernex_pid) +
                                         ", is gone); `kernex kernel list --prune` removes its record");
    }
    if (::syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, nullptr, 0) != 0) {
        const int e = errno;
        ::close(pidfd);
        throw error(errc::io_error, "cannot signal kernel " + r.id + "'s kernex process " +
                                        std::to_string(r.kernex_pid) + ": " + std::strerror(e));
    }
    pollfd p{pidfd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(stop_wait).count()));
    ::close(pidfd);
    if (ready <= 0)
        throw error(errc::timeout, "Timeout: kernel " + r.id + "'s kernex process " + std::to_string(r.kernex_pid) +
                                       " was sent SIGTERM and did not end within " +
                                       seconds_of(std::chrono::duration<double>(stop_wait).count()));
    std::cerr << "kernex: kernel " << r.id << " (" << r.kernel_name << ") was shut down\n";
}

}  // namespace

kernel_record::kernel_record(const fs::path& connection_file, const std::string& kernel_name, int kernel_pid) {
    const fs::path dir = jupyter_runtime_dir();
    std::error_code ec;
    if (fs::create_directories(dir, ec)) fs::permissions(dir, fs::perms::owner_all, ec);
    std::string base = connection_file.stem().string();
    if (base.starts_with("kernel-") && base.size() > 7) base = base.substr(7);
    const json content{{"connection_file", fs::absolute(connection_file).string()},
                       {"kernel_name", kernel_name},
                       {"kernel_pid", kernel_pid},
                       {"kernex_pid", static_cast<int>(::getpid())},
                       {"kernex_started", start_time(static_cast<int>(::getpid())).value_or(0)}};
    const std::string text = content.dump(2) + "\n";
    for (int n = 1; n <= 100; ++n) {
        std::string id = n == 1 ? base : base + "-" + std::to_string(n);
        fs::path path = dir / (std::string(record_prefix) + id + std::string(record_suffix));
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0)
            throw error(errc::io_error, "cannot write the kernel's record " + path.string() + ": " + std::strerror(errno));
        const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
        ::close(fd);
        if (!written) {
            fs::remove(path, ec);
            throw error(errc::io_error, "cannot write the kernel's record " + path.string());
        }
        m_path = std::move(path);
        m_id = std::move(id);
        m_content = content.dump();
        spawn_options keeper = keeper_spawn_options();
        keeper.remove_if_orphaned = {m_path};
        try {
            m_keeper.emplace(keeper);
        } catch (const error&) {
            // Without it, a kill -9 leaves a stale record: `kernel list --prune` removes it.
        }
        return;
    }
    throw error(errc::io_error, "too many kernel records named kernex-kernel-" + base + "*.json in " + dir.string());
}

void kernel_record::set_kernel_pid(int kernel_pid) noexcept {
    try {
        std::lock_guard lock(m_mutex);
        if (m_gone) return;
        json content = json::parse(m_content);
        content["kernel_pid"] = kernel_pid;
        const std::string text = content.dump(2) + "\n";
        // A new file beside it (never through a link planted there), renamed over the record.
        const fs::path next = m_path.string() + ".new";
        std::error_code ec;
        fs::remove(next, ec);
        const int fd = ::open(next.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) return;
        const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
        ::close(fd);
        if (!written || ::rename(next.c_str(), m_path.c_str()) != 0) fs::remove(next, ec);
        else m_content = content.dump();
    } catch (...) {
        // The old record stays: its pid is the dead kernel's, and list says it is not alive.
    }
}

kernel_record::~kernel_record() {
    std::lock_guard lock(m_mutex);
    m_gone = true;
    std::error_code ec;
    fs::remove(m_path, ec);
    if (m_keeper) m_keeper->stop(std::chrono::milliseconds(0));
}

std::function<std::optional<int>()> add_kernel_list_stop(CLI::App& kernel) {
    struct options {
        bool json = false;
        bool prune = false;
        std::vector<std::string> targets;
    };
    auto o = std::make_shared<options>();
    auto* list = kernel.add_subcommand(
        "list",
        "List the kernels `kernex kernel start` runs on this machine: id, kernel name, the kernel's pid\n"
        "(at start), whether it is alive, connection file.");
    list->add_flag("--json", o->json, "Print {\"kernels\": [{id, connection_file, kernel_name, pid, kernex_pid, alive}]}");
    list->add_flag("--prune", o->prune,
                   "First remove stale records (their `kernel start` is gone) and their connection files\n"
                   "(kept while the kernel's pid still runs)");
    auto* stop = kernel.add_subcommand("stop",
                                       "Shut down kernels `kernex kernel start` runs (as Ctrl-C would), and wait for it.");
    stop->add_option("kernel", o->targets, "Kernel ids (or a unique start of one) or connection files")->required();
    return [o, list, stop]() -> std::optional<int> {
        if (list->parsed()) return list_kernels(o->json, o->prune);
        if (!stop->parsed()) return std::nullopt;
        const auto records = read_records();
        std::vector<const record*> chosen;
        for (const auto& t : o->targets) chosen.push_back(&find_record(records, t));  // all found before any stops
        for (const auto* r : chosen) stop_kernel(*r);
        return 0;
    };
}

}  // namespace kernex::cli
