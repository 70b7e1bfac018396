// Small pieces the process, executor and stress tests share: a temporary
// directory removed at scope exit, a runtime dir of its own, reading a file,
// whether a process is gone, our children and process groups from /proc, our
// RSS and open fds.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace kernex::test {

class temp_dir {
public:
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "kernex-test-XXXXXX").string();
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
        m_path = pattern;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::filesystem::path& path() const { return m_path; }
    std::filesystem::path operator/(const std::string& name) const { return m_path / name; }

private:
    std::filesystem::path m_path;
};

inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

inline void write_file(const std::filesystem::path& path, const std::string& text, bool executable = false) {
    std::ofstream(path, std::ios::binary) << text;
    if (executable)
        std::filesystem::permissions(path, std::filesystem::perms::owner_all, std::filesystem::perm_options::add);
}

// Whether pid is no longer running (absent, or a zombie its new parent has
// not reaped yet), waiting up to within for it to get there.
inline bool process_gone(pid_t pid, std::chrono::milliseconds within = std::chrono::milliseconds(3000)) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    for (;;) {
        const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
        const auto paren = stat.rfind(')');
        if (stat.empty() || (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z'))
            return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

// A word for a command line (`exec -a WORD sleep 1000`) no other process has.
inline std::string unique_marker() {
    static int count = 0;
    return "kxmark" + std::to_string(::getpid()) + "n" + std::to_string(++count) +
           std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000);
}

// pids of running processes whose command line holds marker (a /proc walk).
// For processes of a block in a pid namespace of its own, whose $$ and $!
// mean nothing here.
inline std::vector<pid_t> processes_with(const std::string& marker) {
    std::vector<pid_t> found;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
        const std::string name = entry.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        const pid_t pid = static_cast<pid_t>(std::stol(name));
        if (read_file(entry.path() / "cmdline").find(marker) != std::string::npos && !process_gone(pid, {}))
            found.push_back(pid);
    }
    return found;
}

// Whether no process with marker in its command line is running, waiting up
// to within; SIGKILLs what is left when not, so a failing test leaves nothing.
inline bool no_process_with(const std::string& marker,
                            std::chrono::milliseconds within = std::chrono::milliseconds(3000)) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    for (;;) {
        const auto left = processes_with(marker);
        if (left.empty()) return true;
        if (std::chrono::steady_clock::now() >= deadline) {
            for (const pid_t pid : left) ::kill(pid, SIGKILL);
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

// A field of /proc/self/status in kB ("VmRSS", "VmHWM").
inline long status_kb(const std::string& field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
    return -1;
}

// Resets VmHWM to the current RSS, so a later VmHWM is the peak since now.
inline void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

// A temporary dir that is $JUPYTER_RUNTIME_DIR while it lives, so the
// connection files and logs a test leaves behind are easy to see.
class runtime_dir : public temp_dir {
public:
    runtime_dir() { ::setenv("JUPYTER_RUNTIME_DIR", path().c_str(), 1); }
    ~runtime_dir() { ::unsetenv("JUPYTER_RUNTIME_DIR"); }
    std::size_t files() const {
        return static_cast<std::size_t>(
            std::distance(std::filesystem::directory_iterator(path()), std::filesystem::directory_iterator{}));
    }
};

// Our open file descriptors.
inline std::size_t open_fds() {
    return static_cast<std::size_t>(
        std::distance(std::filesystem::directory_iterator("/proc/self/fd"), std::filesystem::directory_iterator{}));
}

// Raises the soft limit on open fds to the hard limit; returns the new soft limit.
inline long raise_fd_limit() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return -1;
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
    return static_cast<long>(lim.rlim_cur);
}

// A process's state letter, parent and process group, from /proc/PID/stat.
struct proc_stat {
    char state = 0;
    int ppid = 0;
    int pgid = 0;
};
inline std::optional<proc_stat> stat_of(int pid) {
    const std::string line = read_file("/proc/" + std::to_string(pid) + "/stat");
    const auto close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size()) return std::nullopt;
    std::istringstream rest(line.substr(close + 2));
    proc_stat s;
    rest >> s.state >> s.ppid >> s.pgid;
    return s;
}

// Every pid in /proc whose stat satisfies pred.
template <class Pred>
std::vector<int> processes_where(Pred pred) {
    std::vector<int> pids;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        const auto name = entry.path().filename().string();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
        const int pid = std::stoi(name);
        if (auto s = stat_of(pid); s && pred(*s)) pids.push_back(pid);
    }
    return pids;
}

// Our children, in any state (zombies included).
inline std::vector<int> children() {
    const int self = ::getpid();
    return processes_where([self](const proc_stat& s) { return s.ppid == self; });
}

// Living (not zombie) members of process group pgid.
inline std::vector<int> group_members(int pgid) {
    return processes_where([pgid](const proc_stat& s) { return s.pgid == pgid && s.state != 'Z' && s.state != 'X'; });
}

// Waits up to `within` for pred() to hold; returns whether it did.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds within = std::chrono::milliseconds(15000)) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

}  // namespace kernex::test
