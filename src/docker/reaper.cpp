#include "docker/reaper.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "docker/containers.hpp"
#include "docker/ledger.hpp"
#include "docker/nosuid_bind.hpp"
#include "kernex/docker_client.hpp"
#include "kernex/error.hpp"
#include "process/helper_program.hpp"
#include "process/remove_tree.hpp"

namespace kernex::docker {

namespace {

// Everything the child uses, made before the fork: after it, no allocation.
struct child_state {
    static constexpr int max_items = 32;
    static constexpr std::size_t max_path = 4096;
    char containers[max_items][80] = {};
    int container_count = 0;
    char dirs[max_items][max_path] = {};
    int dir_count = 0;
    char mounts[max_items][max_path] = {};
    int mount_count = 0;
    char line[max_path + 8] = {};
    std::size_t line_length = 0;
    bool goodbye = false;
    sockaddr_storage address{};
    socklen_t address_length = 0;
    char request[256] = {};
    char response[1024] = {};
};

// In the child: async-signal-safe only.
void add(char (*table)[child_state::max_path], int& count, const char* value, std::size_t length) {
    for (int i = 0; i < count; ++i)
        if (std::strlen(table[i]) == length && std::memcmp(table[i], value, length) == 0) return;
    if (count >= child_state::max_items || length == 0 || length >= child_state::max_path) return;
    std::memcpy(table[count], value, length);
    table[count][length] = '\0';
    ++count;
}

void drop(char (*table)[child_state::max_path], int& count, const char* value, std::size_t length) {
    for (int i = 0; i < count; ++i)
        if (std::strlen(table[i]) == length && std::memcmp(table[i], value, length) == 0) {
            if (i != count - 1) std::memcpy(table[i], table[count - 1], child_state::max_path);
            --count;
            return;
        }
}

void handle_line(child_state& s) {
    const char what = s.line[0];
    const char* value = s.line + 1;
    const std::size_t length = s.line_length - 1;
    if (what == 'q') {
        s.goodbye = true;
    } else if (what == 'c' || what == 'C') {
        // Container ids: up to 64 hex digits.
        if (length > 64) return;
        for (std::size_t i = 0; i < length; ++i) {
            const char c = value[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return;
        }
        int found = -1;
        for (int i = 0; i < s.container_count; ++i)
            if (std::strlen(s.containers[i]) == length && std::memcmp(s.containers[i], value, length) == 0) found = i;
        if (what == 'c' && found < 0 && s.container_count < child_state::max_items && length > 0) {
            std::memcpy(s.containers[s.container_count], value, length);
            s.containers[s.container_count][length] = '\0';
            ++s.container_count;
        } else if (what == 'C' && found >= 0) {
            if (found != s.container_count - 1)
                std::memcpy(s.containers[found], s.containers[s.container_count - 1], sizeof s.containers[0]);
            --s.container_count;
        }
    } else if (what == 'd') {
        add(s.dirs, s.dir_count, value, length);
    } else if (what == 'D') {
        drop(s.dirs, s.dir_count, value, length);
    } else if (what == 'm') {
        add(s.mounts, s.mount_count, value, length);
    } else if (what == 'M') {
        drop(s.mounts, s.mount_count, value, length);
    }
}

void append(char* out, std::size_t& at, std::size_t size, const char* text) {
    const std::size_t n = std::strlen(text);
    if (at + n >= size) return;
    std::memcpy(out + at, text, n);
    at += n;
    out[at] = '\0';
}

// DELETE /containers/{id}?force=true&v=true, waiting (10 s at most) for the answer.
void remove_container(child_state& s, const char* id) {
    const int fd = ::socket(s.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    const timeval ten{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &ten, sizeof ten);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &ten, sizeof ten);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&s.address), s.address_length) == 0) {
        std::size_t at = 0;
        s.request[0] = '\0';
        append(s.request, at, sizeof s.request, "DELETE /containers/");
        append(s.request, at, sizeof s.request, id);
        append(s.request, at, sizeof s.request,
               "?force=true&v=true HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        if (::send(fd, s.request, at, MSG_NOSIGNAL) == static_cast<ssize_t>(at)) {
            ssize_t n;
            while ((n = ::recv(fd, s.response, sizeof s.response, 0)) > 0 || (n < 0 && errno == EINTR)) {}
        }
    }
    ::close(fd);
}

// Reads orders from fd until it ends (async-signal-safe).
void read_orders(child_state& s, int fd) {
    char buffer[4096];
    for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        for (ssize_t i = 0; i < n; ++i) {
            if (buffer[i] == '\n') {
                if (s.line_length > 0) handle_line(s);
                s.line_length = 0;
            } else if (s.line_length < sizeof s.line - 1) {
                s.line[s.line_length++] = buffer[i];
            }
        }
    }
}

// In the child, first: a session of its own, /dev/null for 0-2, the socket
// as fd 3 and nothing else open. Returns 3.
int detach(int fd) {
    ::setsid();
    const int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
        ::dup2(null, 0);
        ::dup2(null, 1);
        ::dup2(null, 2);
    }
    if (fd != 3) ::dup2(fd, 3);  // a dup2'd fd is not close-on-exec
    else ::fcntl(3, F_SETFD, 0);
    ::syscall(SYS_close_range, 4u, ~0u, 0u);
    return 3;
}

void remove_mount_points(child_state& s) {
    for (int i = 0; i < s.mount_count; ++i) remove_mount_point(s.mounts[i]);
}

[[noreturn]] void run_child(child_state& s, int fd) {
    read_orders(s, detach(fd));
    if (s.goodbye) ::_exit(0);
    // kernex died: its containers first (then nothing in them writes to the dirs).
    for (int i = 0; i < s.container_count; ++i) remove_container(s, s.containers[i]);
    remove_mount_points(s);
    // remove_tree allocates nothing, follows no link and gives dirs the
    // code made unreadable or read-only (chmod 000, 500) their owner's
    // rights back, which rm -rf does not: as a user, such a dir kept the tree.
    for (int i = 0; i < s.dir_count; ++i) detail::remove_tree(s.dirs[i]);
    ::_exit(0);
}

// The daemon's address as a sockaddr, resolved now (not after the fork).
void resolve(const std::string& given, child_state& s) {
    const std::string host = given.empty() ? default_docker_host() : given;
    if (host.starts_with("unix://")) {
        const std::string path = host.substr(7);
        sockaddr_un a{};
        if (path.empty() || path.size() >= sizeof a.sun_path)
            throw error(errc::invalid_argument, "the Docker socket path '" + path + "' does not fit a unix socket address");
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
        std::memcpy(&s.address, &a, sizeof a);
        s.address_length = sizeof a;
        return;
    }
    if (!host.starts_with("tcp://")) throw error(errc::invalid_argument, "Docker host '" + host + "' is not supported");
    std::string rest = host.substr(6);
    if (const auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
    std::string name, port = "2375";
    if (rest.starts_with("[")) {
        const auto close = rest.find(']');
        name = rest.substr(1, close == std::string::npos ? std::string::npos : close - 1);
        if (close != std::string::npos && close + 1 < rest.size() && rest[close + 1] == ':') port = rest.substr(close + 2);
    } else {
        const auto colon = rest.rfind(':');
        name = rest.substr(0, colon);
        if (colon != std::string::npos) port = rest.substr(colon + 1);
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(name.c_str(), port.c_str(), &hints, &found) != 0 || !found)
        throw error(errc::invalid_argument, "cannot resolve the Docker host " + name + ": check DOCKER_HOST");
    std::memcpy(&s.address, found->ai_addr, found->ai_addrlen);
    s.address_length = found->ai_addrlen;
    ::freeaddrinfo(found);
}

}  // namespace

reaper::reaper(const docker_client& client) : m_ledger_entry(ledger_note(client)) {
    auto state = std::make_unique<child_state>();
    // Over TLS: the helper's argv, made before the fork.
    std::vector<std::string> helper_args;
    if (client.uses_tls()) {
        const auto helper = detail::helper_program("kernex-reaper");
        if (helper.empty()) {
            m_missing = "kernex-reaper is not in " + detail::helper_dir().string() +
                        " (install kernex, or set KERNEX_LIBEXEC_DIR to where it is): over TLS, the containers of a "
                        "killed kernex are removed only by the next start's sweep";
            return;
        }
        const auto& o = client.options();
        helper_args = {helper.string(), "--host", o.host, "--ca", o.tls.ca.string()};
        if (!o.tls.cert.empty()) helper_args.insert(helper_args.end(), {"--cert", o.tls.cert.string()});
        if (!o.tls.key.empty()) helper_args.insert(helper_args.end(), {"--key", o.tls.key.string()});
    } else {
        resolve(client.host(), *state);
    }
    std::vector<char*> helper_argv;
    for (auto& a : helper_args) helper_argv.push_back(a.data());
    helper_argv.push_back(nullptr);

    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
        throw error(errc::io_error, std::string("socketpair failed: ") + std::strerror(errno));
    m_pid = ::fork();
    if (m_pid < 0) {
        const int e = errno;
        ::close(ends[0]);
        ::close(ends[1]);
        throw error(errc::io_error, std::string("cannot fork the container reaper: ") + std::strerror(e));
    }
    if (m_pid == 0) {
        ::close(ends[0]);
        if (helper_args.empty()) run_child(*state, ends[1]);
        detach(ends[1]);  // fd 3, without close-on-exec (dup2)
        char* const no_env[] = {nullptr};
        ::execve(helper_argv[0], helper_argv.data(), no_env);
        ::_exit(127);
    }
    ::close(ends[1]);
    m_socket = ends[0];
    // Removed by the child after the containers, should kernex die.
    if (!m_ledger_entry.empty()) track_dir(m_ledger_entry.string());
}

int run_reaper_helper(int fd, const docker_client_options& options) {
    auto state = std::make_unique<child_state>();
    read_orders(*state, fd);
    if (state->goodbye) return 0;
    int status = 0;
    try {
        docker_client client(options);
        for (int i = 0; i < state->container_count; ++i)
            if (!remove_container(client, state->containers[i])) status = 1;
    } catch (const std::exception&) {
        status = 1;
    }
    remove_mount_points(*state);
    for (int i = 0; i < state->dir_count; ++i) {
        detail::remove_tree(state->dirs[i]);  // never follows a link
        struct stat st;
        if (::lstat(state->dirs[i], &st) == 0) status = 1;
    }
    return status;
}

reaper::~reaper() {
    ledger_forget(m_ledger_entry);
    if (m_socket >= 0) {
        send('q', {});
        ::close(m_socket);
    }
    if (m_pid <= 0) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(m_pid, &status, WNOHANG);
        if (r == m_pid || (r < 0 && errno != EINTR)) return;  // reaped, or by someone else
        if (std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ::kill(m_pid, SIGKILL);
    while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {}
}

void reaper::send(char what, const std::string& value) noexcept {
    if (m_socket < 0 || value.find('\n') != std::string::npos) return;
    std::string line;
    try {
        line = what + value + "\n";
    } catch (...) {
        return;
    }
    std::size_t at = 0;
    while (at < line.size()) {
        const ssize_t n = ::send(m_socket, line.data() + at, line.size() - at, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // the reaper is gone: the sweep is left
        at += static_cast<std::size_t>(n);
    }
}

void reaper::track_container(const std::string& id) noexcept { send('c', id); }
void reaper::forget_container(const std::string& id) noexcept { send('C', id); }
void reaper::track_dir(const std::string& path) noexcept { send('d', path); }
void reaper::track_mount(const std::string& path) noexcept { send('m', path); }
void reaper::forget_mount(const std::string& path) noexcept { send('M', path); }
void reaper::forget_dir(const std::string& path) noexcept { send('D', path); }

}  // namespace kernex::docker
