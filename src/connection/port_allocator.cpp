// Keys and free ports for new kernels.
//
// Binding to port 0 and closing the socket only says a port is free now; two
// launches racing in one process could both be told the same port before
// either kernel binds it. So every port handed out is remembered for a while
// (process-wide, under a mutex) and not handed out again.
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "connection/private_dirs.hpp"
#include "kernex/connection.hpp"
#include "kernex/error.hpp"

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
    auto lock = registry().lock();
    // Every probe stays bound until the end, so bind() cannot offer the same
    // port twice, and a recently handed-out port it offers is skipped.
    for (int attempt = 0; found < ports_per_kernel; ++attempt) {
        if (attempt >= ports_per_kernel + max_extra_attempts)
            throw error(errc::io_error, "cannot find " + std::to_string(ports_per_kernel) + " free tcp ports on " + ip);
        int fd = ::socket(ai.ai_family, ai.ai_socktype | SOCK_CLOEXEC, ai.ai_protocol);
        if (fd < 0) throw error(errc::io_error, std::string("cannot create a socket: ") + std::strerror(errno));
        probes.fds.push_back(fd);
        if (::bind(fd, ai.ai_addr, ai.ai_addrlen) != 0) {
            int err = errno;
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
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
        throw error(errc::io_error, "OpenSSL's random number generator failed to produce a key");
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
