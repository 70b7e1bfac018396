// Keys and free ports for new kernels.
//
// A port that binds now is only free now. Two hazards remain until the
// kernel binds it:
// - two launches racing in one process could be told the same port: every
//   port handed out is remembered for a while (process-wide, under a mutex)
//   and not handed out again;
// - any outgoing connection on the machine (ZeroMQ clients of the other
//   kernels among them) takes a local port from the ephemeral range, and so
//   may take ours: ports are drawn outside that range
//   (/proc/sys/net/ipv4/ip_local_port_range), which the OS never assigns on
//   its own. Binding to port 0, as jupyter_client does, draws from inside
//   it: with 40 kernels starting at once that collided about once a run.
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "connection/private_dirs.hpp"
#include "kernex/connection.hpp"
#include "kernex/error.hpp"
#include "wire/random_bytes.hpp"

namespace fs = std::filesystem;

namespace kernex {
namespace {

using steady = std::chrono::steady_clock;

// Long enough for any kernel to have bound its ports; after that the OS
// itself no longer offers a port a kernel holds.
constexpr auto recent_window = std::chrono::minutes(5);
constexpr std::size_t recent_capacity = 16384;
constexpr int ports_per_kernel = 5;
// Beyond the five, how many ports bind() may offer that were recently handed
// out before we give up.
constexpr int max_extra_attempts = 256;
// Ports drawn outside the ephemeral range before bind() is left to choose.
constexpr int max_drawn_attempts = 1000;

// Ports (tcp) and socket paths (ipc) handed out recently by this process.
class recent_registry {
public:
    // Held for a whole allocation, so that checking and recording are one step.
    std::unique_lock<std::mutex> lock() { return std::unique_lock(m_mutex); }

    bool contains(const std::string& key) {
        expire();
        return m_keys.count(key) != 0;
    }
    void add(const std::string& key) {
        if (m_keys.insert(key).second) m_order.emplace_back(steady::now(), key);
        while (m_order.size() > recent_capacity) {
            m_keys.erase(m_order.front().second);
            m_order.pop_front();
        }
    }

private:
    void expire() {
        const auto cutoff = steady::now() - recent_window;
        while (!m_order.empty() && m_order.front().first < cutoff) {
            m_keys.erase(m_order.front().second);
            m_order.pop_front();
        }
    }

    std::mutex m_mutex;
    std::set<std::string> m_keys;
    std::deque<std::pair<steady::time_point, std::string>> m_order;
};

recent_registry& registry() {
    static recent_registry instance;
    return instance;
}

// Closes the probe sockets once the ports are chosen, on every path.
struct socket_set {
    std::vector<int> fds;
    ~socket_set() {
        for (int fd : fds) ::close(fd);
    }
};

struct addrinfo_deleter {
    void operator()(addrinfo* ai) const { ::freeaddrinfo(ai); }
};

// Port ranges the OS does not assign to sockets on its own: above and
// below the ephemeral range (below it only from 10000 up, clear of the
// usual services). Empty when the ephemeral range leaves no room.
std::vector<std::pair<int, int>> non_ephemeral_ranges() {
    int low = 32768, high = 60999;  // Linux's defaults
    if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
        int l = 0, h = 0;
        if (std::fscanf(f, "%d %d", &l, &h) == 2 && l > 0 && h >= l) low = l, high = h;
        std::fclose(f);
    }
    std::vector<std::pair<int, int>> ranges;
    if (high < 65535) ranges.emplace_back(high + 1, 65535);
    if (low > 10000) ranges.emplace_back(10000, low - 1);
    return ranges;
}

// A candidate port, uniform over ranges; 0 asks bind() for an ephemeral one.
std::uint16_t draw_port(const std::vector<std::pair<int, int>>& ranges) {
    if (ranges.empty()) return 0;
    thread_local std::mt19937 random{std::random_device{}()};
    int total = 0;
    for (const auto& [lo, hi] : ranges) total += hi - lo + 1;
    int n = std::uniform_int_distribution<int>(0, total - 1)(random);
    for (const auto& [lo, hi] : ranges) {
        if (n <= hi - lo) return static_cast<std::uint16_t>(lo + n);
        n -= hi - lo + 1;
    }
    return 0;
}

void set_port(sockaddr* address, std::uint16_t port) {
    if (address->sa_family == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(address)->sin6_port = htons(port);
    else
        reinterpret_cast<sockaddr_in*>(address)->sin_port = htons(port);
}

std::array<std::uint16_t, ports_per_kernel> allocate_tcp(const std::string& ip) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* raw = nullptr;
    if (int rc = ::getaddrinfo(ip.c_str(), "0", &hints, &raw); rc != 0)
        throw error(errc::invalid_argument, "cannot use ip '" + ip + "' for a kernel: " + ::gai_strerror(rc));
    std::unique_ptr<addrinfo, addrinfo_deleter> addresses(raw);
    const addrinfo& ai = *addresses;

    std::array<std::uint16_t, ports_per_kernel> ports{};
    int found = 0;
    socket_set probes;
    const auto ranges = non_ephemeral_ranges();
    sockaddr_storage address{};
    std::memcpy(&address, ai.ai_addr, ai.ai_addrlen);
    auto lock = registry().lock();
    // Every probe stays bound until the end, so no port is offered twice,
    // and a recently handed-out port is skipped. Drawn ports that are taken
    // (or, after many, any port at all) fall back to bind()'s own choice.
    for (int attempt = 0; found < ports_per_kernel; ++attempt) {
        if (attempt >= ports_per_kernel + max_drawn_attempts + max_extra_attempts)
            throw error(errc::io_error, "cannot find " + std::to_string(ports_per_kernel) + " free tcp ports on " + ip);
        const std::uint16_t wanted = attempt < ports_per_kernel + max_drawn_attempts ? draw_port(ranges) : 0;
        if (wanted != 0 && registry().contains("tcp:" + std::to_string(wanted))) continue;
        int fd = ::socket(ai.ai_family, ai.ai_socktype | SOCK_CLOEXEC, ai.ai_protocol);
        if (fd < 0) throw error(errc::io_error, std::string("cannot create a socket: ") + std::strerror(errno));
        probes.fds.push_back(fd);
        set_port(reinterpret_cast<sockaddr*>(&address), wanted);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&address), ai.ai_addrlen) != 0) {
            int err = errno;
            if (wanted != 0 && (err == EADDRINUSE || err == EACCES)) continue;  // taken: draw another
            throw error(err == EADDRNOTAVAIL ? errc::invalid_argument : errc::io_error,
                        "cannot bind a port on ip '" + ip + "': " + std::strerror(err) +
                            (err == EADDRNOTAVAIL ? " (not an address of this host)" : ""));
        }
        sockaddr_storage bound{};
        socklen_t len = sizeof bound;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0)
            throw error(errc::io_error, std::string("cannot read a bound port: ") + std::strerror(errno));
        std::uint16_t port = ntohs(bound.ss_family == AF_INET6
                                       ? reinterpret_cast<const sockaddr_in6&>(bound).sin6_port
                                       : reinterpret_cast<const sockaddr_in&>(bound).sin_port);
        // Keyed by port alone: a kernel on 0.0.0.0 and one on 127.0.0.1
        // cannot share a port either.
        const std::string key = "tcp:" + std::to_string(port);
        if (registry().contains(key)) continue;
        ports[found++] = port;
    }
    for (std::uint16_t port : ports) registry().add("tcp:" + std::to_string(port));
    return ports;
}

std::array<std::uint16_t, ports_per_kernel> allocate_ipc(const std::string& prefix) {
    std::array<std::uint16_t, ports_per_kernel> ports{};
    int found = 0;
    auto lock = registry().lock();
    // Counting up from 1 as jupyter_client does, skipping any name taken by a
    // file (even a dangling symlink) or handed out recently.
    for (unsigned n = 1; found < ports_per_kernel; ++n) {
        if (n > 65535) throw error(errc::io_error, "no free ipc socket names with prefix " + prefix);
        const std::string path = prefix + "-" + std::to_string(n);
        if (path.size() >= sizeof(sockaddr_un{}.sun_path))
            throw error(errc::invalid_argument, "ipc socket path " + path + " is too long for a unix socket (" +
                                                    std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                                                    " bytes at most); use a shorter ip prefix");
        struct stat st;
        if (::lstat(path.c_str(), &st) == 0 || registry().contains("ipc:" + path)) continue;
        ports[found++] = static_cast<std::uint16_t>(n);
    }
    for (std::uint16_t port : ports) registry().add("ipc:" + prefix + "-" + std::to_string(port));
    return ports;
}

}  // namespace

std::string random_key() {
    std::array<unsigned char, 32> bytes{};
    detail::random_bytes(bytes.data(), bytes.size(), "a key");
    static constexpr char digits[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) {
        hex += digits[b >> 4];
        hex += digits[b & 0xf];
    }
    return hex;
}

connection_info allocate_ports(connection_info info) {
    info.key = random_key();
    std::array<std::uint16_t, ports_per_kernel> ports;
    if (info.transport == "tcp") {
        ports = allocate_tcp(info.ip);
    } else if (info.transport == "ipc") {
        // The tcp default would put sockets named "127.0.0.1-1" in the
        // working directory; the pid keeps processes from sharing a prefix.
        if (info.ip.empty() || info.ip == "127.0.0.1") {
            const fs::path runtime = jupyter_runtime_dir();
            create_private_dirs(runtime);
            info.ip = (runtime / ("kernel-" + std::to_string(::getpid()) + "-ipc")).string();
        }
        ports = allocate_ipc(info.ip);
    } else {
        throw error(errc::invalid_argument, "unknown transport '" + info.transport + "': use \"tcp\" or \"ipc\"");
    }
    info.shell_port = ports[0];
    info.iopub_port = ports[1];
    info.stdin_port = ports[2];
    info.control_port = ports[3];
    info.hb_port = ports[4];
    return info;
}

}  // namespace kernex
