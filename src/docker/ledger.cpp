#include "docker/ledger.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "connection/private_dirs.hpp"
#include "docker/containers.hpp"
#include "kernex/connection.hpp"

namespace kernex::docker {

namespace {

namespace fs = std::filesystem;

constexpr auto retry_after = std::chrono::minutes(10);
// A daemon that has not answered for this long after its kernex died (a
// test's, a machine's that was removed) is given up on. Its containers, if
// it ever comes back, are still swept by the next docker executor or
// kernel start on it (their owner labels).
constexpr auto give_up_after = std::chrono::hours(24 * 7);

// "<pid>-<start time>-<random>.json": the owner, and one entry per reaper.
struct owner_name {
    std::string pid;
    std::string start;
};

std::optional<owner_name> owner_of(const std::string& file_name) {
    const auto first = file_name.find('-');
    const auto second = file_name.find('-', first == std::string::npos ? first : first + 1);
    if (first == std::string::npos || second == std::string::npos || !file_name.ends_with(".json")) return {};
    owner_name owner{file_name.substr(0, first), file_name.substr(first + 1, second - first - 1)};
    if (owner.pid.empty() || owner.pid.find_first_not_of("0123456789") != std::string::npos) return {};
    return owner;
}

docker_client_options options_from(const nlohmann::json& entry) {
    docker_client_options options;
    options.host = entry.at("host").get<std::string>();
    options.timeout = std::chrono::seconds(2);
    const auto& tls = entry.at("tls");
    options.tls.verify = tls.at("verify").get<bool>();
    options.tls.ca = tls.value("ca", "");
    options.tls.cert = tls.value("cert", "");
    options.tls.key = tls.value("key", "");
    return options;
}

}  // namespace

fs::path ledger_dir() {
    // Beside the user's other state, not in the Jupyter runtime dir (which
    // holds only what a kernel in use needs).
    const char* state = std::getenv("XDG_STATE_HOME");
    if (state && *state == '/') return fs::path(state) / "kernex" / "containers";
    const char* home = std::getenv("HOME");
    if (home && *home == '/') return fs::path(home) / ".local" / "state" / "kernex" / "containers";
    return jupyter_runtime_dir() / "kernex-containers";
}

fs::path ledger_note(const docker_client& client) noexcept {
    try {
        const fs::path dir = ledger_dir();
        create_private_dirs(dir);
        const std::string pid = std::to_string(::getpid());
        const fs::path entry = dir / (pid + "-" + process_start_time(pid) + "-" + random_hex(8) + ".json");
        const auto& o = client.options();
        const nlohmann::json text = {
            {"host", client.host()},
            {"written", std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count()},
            {"tls", {{"verify", client.uses_tls()}, {"ca", o.tls.ca}, {"cert", o.tls.cert}, {"key", o.tls.key}}}};
        const std::string body = text.dump() + "\n";
        // A dir of kernex's own (0700): no code writes there.
        const int fd = ::open(entry.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) return {};
        const bool written = ::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size());
        ::close(fd);
        if (!written) {
            ::unlink(entry.c_str());
            return {};
        }
        return entry;
    } catch (...) {
        return {};
    }
}

void ledger_forget(const fs::path& entry) noexcept {
    if (entry.empty()) return;
    ::unlink(entry.c_str());
    ::rmdir(entry.parent_path().c_str());  // when it was the last: nothing of kernex's left in the runtime dir
}

int sweep_ledger() noexcept {
    int removed = 0;
    try {
        std::error_code ec;
        fs::directory_iterator it(ledger_dir(), ec);
        if (ec) return 0;  // no dir: no entry, the common case
        const auto now = fs::file_time_type::clock::now();
        for (const auto& item : it) {
            const std::string name = item.path().filename().string();
            const auto owner = owner_of(name);
            if (!owner) continue;
            if (!owner->start.empty() && process_start_time(owner->pid) == owner->start) continue;  // it lives
            // An entry whose daemon did not answer carries the time of its next try.
            const auto next_try = fs::last_write_time(item.path(), ec);
            if (ec || next_try > now) continue;
            std::ifstream in(item.path());
            std::stringstream text;
            text << in.rdbuf();
            const auto entry = nlohmann::json::parse(text.str(), nullptr, false);
            docker_client_options options;
            try {
                if (!entry.is_object()) throw std::invalid_argument("not an object");
                options = options_from(entry);
            } catch (...) {
                fs::remove(item.path(), ec);  // not one kernex wrote whole: nothing to try again
                continue;
            }
            if (const auto w = entry.find("written"); w != entry.end() && w->is_number_integer()) {
                const std::chrono::system_clock::time_point written{std::chrono::seconds(w->get<std::int64_t>())};
                if (std::chrono::system_clock::now() - written > give_up_after) {
                    fs::remove(item.path(), ec);
                    continue;
                }
            }
            try {
                if (!docker_client(options).ping(std::chrono::seconds(2))) throw std::runtime_error("no answer");
                // It answers: its removals (a kill and a delete each) may take longer than a ping.
                options.timeout = std::chrono::seconds(20);
                docker_client client(options);
                bool complete = false;
                removed += sweep_orphans(client, &complete);
                if (!complete) throw std::runtime_error("not all removed");
                ledger_forget(item.path());
            } catch (...) {
                // Not reachable now: tried again later, not at every start.
                fs::last_write_time(item.path(), now + retry_after, ec);
            }
        }
    } catch (...) {
        // A sweep is a courtesy; nothing of it may stop the command.
    }
    return removed;
}

}  // namespace kernex::docker
