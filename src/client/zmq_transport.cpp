// ZeroMQ transport: four DEALER/SUB sockets to a kernel's ROUTER/PUB
// sockets, plus a heartbeat thread with its own REQ socket. All message
// sockets belong to the thread that uses the transport; the heartbeat thread
// creates, uses and closes its own socket and is stopped through an eventfd.
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stop_token>
#include <thread>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "client/zmq_context.hpp"
#include "kernex/error.hpp"
#include "kernex/transport.hpp"

namespace kernex {

zmq::context_t& shared_zmq_context() {
    // Never destroyed: zmq_ctx_term at exit would wait for sockets that
    // background threads of a still-running program might hold.
    static auto* context = new zmq::context_t(1);
    return *context;
}

namespace {

// zmq::poll, with a signal's interruption (EINTR) taken as "nothing ready
// yet": every caller polls in a loop against its own deadline. A program
// that embeds kernex may have signal handlers of its own (kernex run and
// exec do), and those must not turn into errors of the cell.
int poll_items(zmq::pollitem_t* items, std::size_t count, std::chrono::milliseconds timeout) {
    const int n = zmq_poll(items, static_cast<int>(count), static_cast<long>(timeout.count()));
    if (n >= 0) return n;
    if (zmq_errno() == EINTR) {
        for (std::size_t i = 0; i < count; ++i) items[i].revents = 0;
        return 0;
    }
    throw zmq::error_t();
}

// A Linux eventfd used to wake a poll from another thread.
class event_fd {
public:
    event_fd() : m_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
        if (m_fd < 0) throw error(errc::io_error, std::string("eventfd: ") + std::strerror(errno));
    }
    ~event_fd() { ::close(m_fd); }
    event_fd(const event_fd&) = delete;
    event_fd& operator=(const event_fd&) = delete;
    int fd() const noexcept { return m_fd; }
    void notify() noexcept {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(m_fd, &one, sizeof one);
    }
    void clear() noexcept {
        std::uint64_t value = 0;
        [[maybe_unused]] auto n = ::read(m_fd, &value, sizeof value);
    }

private:
    int m_fd;
};

void configure(zmq::socket_t& s) {
    s.set(zmq::sockopt::linger, 0);
    // Reconnect fast: a kernel that is still starting (or restarting on the
    // same ports) is reached within a few milliseconds of binding. The
    // back-off stops at 5 ms (it was 20: on average 10 ms of every start
    // was spent waiting for the next attempt); a refused connect costs
    // microseconds.
    s.set(zmq::sockopt::reconnect_ivl, 1);
    s.set(zmq::sockopt::reconnect_ivl_max, 5);
}

// Whether something still accepts connections at a ZeroMQ tcp:// or ipc://
// endpoint, tried with a plain connect within timeout. A kernel process
// that is gone leaves none (refused at once, or the ipc path unbound); one
// that is alive but busy still has its sockets, whose connections the
// operating system accepts whatever the process is doing.
bool endpoint_accepts(const std::string& endpoint, std::chrono::milliseconds timeout) {
    auto fd_connect = [&](int family, const sockaddr* addr, socklen_t len) {
        int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) return true;  // cannot tell: not a death
        bool ok = ::connect(fd, addr, len) == 0;
        if (!ok && errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            if (::poll(&p, 1, static_cast<int>(timeout.count())) > 0) {
                int err = 0;
                socklen_t n = sizeof err;
                ok = ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &n) == 0 && err == 0;
            }
        }
        ::close(fd);
        return ok;
    };
    if (endpoint.starts_with("ipc://")) {
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string path = endpoint.substr(6);
        if (path.size() >= sizeof addr.sun_path) return true;
        std::memcpy(addr.sun_path, path.data(), path.size());
        return fd_connect(AF_UNIX, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    }
    if (!endpoint.starts_with("tcp://")) return true;
    std::string rest = endpoint.substr(6);
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) return true;
    std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || !found) return true;
    bool ok = false;
    for (auto* a = found; a && !ok; a = a->ai_next) ok = fd_connect(a->ai_family, a->ai_addr, a->ai_addrlen);
    ::freeaddrinfo(found);
    return ok;
}

// Pings the kernel's heartbeat socket once per period from its own thread.
// Some kernels echo only between requests (IRkernel answers in its main
// loop, so never while a cell runs): a missed echo means busy as often as
// dead. Dead is declared after misses_before_dead periods in a row without
// an echo, and only when the kernel's heartbeat endpoint no longer accepts
// connections (its process is gone); a busy kernel is waited for.
// A socket's connections as its ZeroMQ monitor reports them: whether one is
// up (its handshake done) and how many have come up so far. Made before the
// socket connects, so that no event is missed; stops the monitor before
// its own end closes (libzmq's IO thread sends monitor events with a
// blocking send: one sent after our end closed would block it, and with it
// every socket of the shared context).
class connection_watch {
public:
    connection_watch(zmq::socket_t& watched, const char* what) : m_watched(watched.handle()) {
        static std::atomic<unsigned long> next{0};
        const std::string endpoint = "inproc://kernex-connection-monitor-" + std::to_string(next++);
        if (zmq_socket_monitor(m_watched, endpoint.c_str(), ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) != 0)
            throw error(errc::io_error,
                        std::string("could not watch the ") + what + " connection: " + zmq_strerror(zmq_errno()));
        // Unbounded (an inproc pipe is when either end's limit is 0): a full
        // pipe would block the IO thread that sends the events. There are two
        // per reconnection, drained whenever the state is asked for.
        m_monitor.set(zmq::sockopt::linger, 0);
        m_monitor.set(zmq::sockopt::rcvhwm, 0);
        m_monitor.connect(endpoint);
    }
    ~connection_watch() { zmq_socket_monitor(m_watched, nullptr, 0); }
    connection_watch(const connection_watch&) = delete;
    connection_watch& operator=(const connection_watch&) = delete;

    bool up() {
        drain();
        return m_up;
    }
    unsigned long connections() {
        drain();
        return m_connections;
    }

private:
    void drain() {
        // The monitor's events, oldest first: [event (2 bytes), value (4)], endpoint.
        for (;;) {
            m_parts.clear();
            auto got = zmq::recv_multipart(m_monitor, std::back_inserter(m_parts), zmq::recv_flags::dontwait);
            if (!got) break;
            if (m_parts.empty() || m_parts[0].size() < 2) continue;
            std::uint16_t event = 0;
            std::memcpy(&event, m_parts[0].data(), sizeof event);
            if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
                m_up = true;
                ++m_connections;
            }
            if (event == ZMQ_EVENT_DISCONNECTED) m_up = false;
        }
        m_parts.clear();
    }

    void* m_watched;
    zmq::socket_t m_monitor{shared_zmq_context(), zmq::socket_type::pair};
    std::vector<zmq::message_t> m_parts;
    bool m_up = false;
    unsigned long m_connections = 0;
};

class heartbeat {
public:
    heartbeat(std::string endpoint, std::chrono::milliseconds period, event_fd& dead_event,
              std::atomic<bool>& dead)
        : m_thread([this, endpoint = std::move(endpoint), period, &dead_event, &dead](std::stop_token st) {
              run(st, endpoint, period, dead_event, dead);
          }) {}
    ~heartbeat() {
        m_thread.request_stop();
        m_stop.notify();
        m_thread.join();
    }

private:
    void run(std::stop_token st, const std::string& endpoint, std::chrono::milliseconds period,
             event_fd& dead_event, std::atomic<bool>& dead) {
        using clock = std::chrono::steady_clock;
        int misses = 0;
        while (!st.stop_requested()) {
            // A REQ socket that missed its reply is stuck; a fresh one per
            // miss keeps the state machine simple.
            zmq::socket_t sock(shared_zmq_context(), zmq::socket_type::req);
            configure(sock);
            sock.connect(endpoint);
            bool answered = true;
            while (answered && !st.stop_requested()) {
                auto sent_at = clock::now();
                sock.send(zmq::buffer(std::string_view("ping")), zmq::send_flags::none);
                answered = wait(sock, sent_at + period, st);
                if (!answered) break;
                misses = 0;
                if (dead.exchange(false)) dead_event.clear();
                // Sleep out the rest of the period (wakes early on stop).
                zmq::pollitem_t item{nullptr, m_stop.fd(), ZMQ_POLLIN, 0};
                auto rest = std::chrono::duration_cast<std::chrono::milliseconds>(sent_at + period - clock::now());
                if (rest.count() > 0) poll_items(&item, 1, rest);
            }
            if (st.stop_requested()) break;
            if (++misses < misses_before_dead || dead.load()) continue;
            if (endpoint_accepts(endpoint, period)) continue;  // busy, not dead
            if (!dead.exchange(true)) dead_event.notify();
        }
    }

    bool wait(zmq::socket_t& sock, std::chrono::steady_clock::time_point deadline, std::stop_token& st) {
        while (!st.stop_requested()) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            std::array<zmq::pollitem_t, 2> items{{{sock.handle(), 0, ZMQ_POLLIN, 0},
                                                  {nullptr, m_stop.fd(), ZMQ_POLLIN, 0}}};
            poll_items(items.data(), items.size(), left);
            if (items[0].revents & ZMQ_POLLIN) {
                zmq::message_t reply;
                (void)sock.recv(reply, zmq::recv_flags::dontwait);
                return true;
            }
        }
        return false;
    }

    static constexpr int misses_before_dead = 3;
    event_fd m_stop;
    std::jthread m_thread;
};

class zmq_transport final : public transport {
public:
    zmq_transport(const connection_info& info, const std::string& session, zmq_transport_options options)
        : m_codec(info.key, info.signature_scheme, options.codec),
          m_shell(shared_zmq_context(), zmq::socket_type::dealer),
          m_iopub(shared_zmq_context(), zmq::socket_type::sub),
          m_stdin(shared_zmq_context(), zmq::socket_type::dealer),
          m_control(shared_zmq_context(), zmq::socket_type::dealer),
          m_iopub_endpoint(info.iopub_endpoint()) {
        for (auto* s : {&m_shell, &m_iopub, &m_stdin, &m_control}) {
            configure(*s);
            // A peer sending a larger frame is disconnected before ZeroMQ
            // allocates it: no peer can make us hold more than this at once.
            s->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(options.codec.max_message_bytes));
        }
        // Kernels send input_request to the stdin peer whose identity matches
        // the shell request's: both use the session.
        m_shell.set(zmq::sockopt::routing_id, session);
        m_stdin.set(zmq::sockopt::routing_id, session);
        m_iopub.set(zmq::sockopt::subscribe, "");
        m_iopub.set(zmq::sockopt::rcvhwm, options.iopub_queue_messages);
        m_shell.connect(info.shell_endpoint());
        m_iopub.connect(m_iopub_endpoint);
        m_stdin.connect(info.stdin_endpoint());
        m_control.connect(info.control_endpoint());
        if (options.heartbeat_period.count() > 0)
            m_heartbeat = std::make_unique<heartbeat>(info.hb_endpoint(), options.heartbeat_period,
                                                      m_hb_event, m_hb_dead);
        for (std::size_t i = 0; i < channel_order.size(); ++i)
            m_fds[i] = {socket(channel_order[i]).get(zmq::sockopt::fd), POLLIN, 0};
        m_fds[4] = {m_hb_event.fd(), POLLIN, 0};
        m_fds[5] = {-1, POLLIN, 0};
    }

    ~zmq_transport() override {
        m_heartbeat.reset();  // joins before the eventfd it writes goes away
    }

    void send(channel ch, const message& msg) override {
        auto frames = m_codec.encode(msg);
        auto& sock = socket(ch);
        m_maybe[index(ch)] = true;
        for (std::size_t i = 0; i < frames.size(); ++i) {
            auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
            if (!sock.send(zmq::buffer(frames[i]), flags))
                throw error(errc::io_error, "could not send on the " + std::string(to_string(ch)) + " channel");
        }
    }

    // One ::poll over the sockets' own descriptors (ZMQ_FD) and ours, and a
    // socket is read only when it may hold a message: zmq_poll instead asks
    // every socket for ZMQ_EVENTS before and after each poll (a syscall
    // each), which was most of the syscalls of a cell. ZMQ_FD is
    // edge-triggered: it becomes readable when commands reach the socket
    // after the last time they were processed, and a receive that finds
    // nothing processes them. So a socket is read until it has nothing
    // (m_maybe false), then waited for through its descriptor; any other
    // call on it (a send, a reconnect) may take the command that announced
    // a message, so it is marked as maybe holding one again.
    receive_status receive(std::chrono::steady_clock::time_point deadline, incoming& out) override {
        for (;;) {
            // A steady flow on one socket must not hide the others: every
            // so many messages, their descriptors are looked at too.
            if (m_unpolled >= max_unpolled) {
                m_unpolled = 0;
                poll_fds(0);
            }
            for (std::size_t i = 0; i < channel_order.size(); ++i) {
                while (m_maybe[i]) {
                    const auto got = read_one(channel_order[i], out);
                    if (got == read_result::message) {
                        ++m_unpolled;
                        return receive_status::message;
                    }
                    if (got == read_result::none) m_maybe[i] = false;
                }
            }
            auto now = std::chrono::steady_clock::now();
            // Never an infinite poll, even for a caller without a deadline:
            // slices of at most a second, with the heartbeat's verdict
            // checked between them.
            int timeout_ms = 0;
            if (deadline > now) {
                auto left = std::min<std::chrono::steady_clock::duration>(deadline - now, std::chrono::seconds(1));
                timeout_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
            }
            m_unpolled = 0;
            const int n = poll_fds(timeout_ms);
            // Messages already queued are delivered before a death is
            // reported: they hold the partial output of the last cell.
            if (std::find(m_maybe.begin(), m_maybe.end(), true) != m_maybe.end()) continue;
            if (n > 0 && m_death_fd >= 0 && (m_fds[5].revents & POLLIN)) return receive_status::peer_dead;
            if (n > 0 && (m_fds[4].revents & POLLIN)) {
                if (m_hb_dead.load()) return receive_status::peer_dead;
                m_hb_event.clear();
                continue;
            }
            if (m_hb_dead.load()) return receive_status::peer_dead;
            if (std::chrono::steady_clock::now() >= deadline) return receive_status::timeout;
        }
    }

    void watch_death_fd(int fd) override { m_death_fd = fd; }

    reject_counters rejected() const override { return m_codec.rejected(); }

    bool stdin_connected() override { return m_stdin_watch.up(); }

    unsigned long iopub_connections() override { return m_iopub_watch.connections(); }

    void reconnect_iopub() override {
        try {
            m_iopub.disconnect(m_iopub_endpoint);
        } catch (const zmq::error_t&) {
            // Already gone with its connection.
        }
        m_iopub.connect(m_iopub_endpoint);
        m_maybe[index(channel::iopub)] = true;
    }

private:
    zmq::socket_t& socket(channel ch) {
        switch (ch) {
        case channel::shell: return m_shell;
        case channel::iopub: return m_iopub;
        case channel::stdin_channel: return m_stdin;
        case channel::control: return m_control;
        }
        return m_shell;
    }

    static constexpr std::array<channel, 4> channel_order{channel::shell, channel::iopub, channel::stdin_channel,
                                                         channel::control};
    // Messages taken without looking at the other sockets' descriptors.
    static constexpr int max_unpolled = 32;

    static std::size_t index(channel ch) {
        switch (ch) {
        case channel::shell: return 0;
        case channel::iopub: return 1;
        case channel::stdin_channel: return 2;
        case channel::control: return 3;
        }
        return 0;
    }

    // Polls the sockets' descriptors, the heartbeat's event and the death fd
    // for up to timeout_ms; marks the sockets whose descriptor is readable.
    // A signal's interruption (EINTR) is "nothing ready yet": every caller
    // polls in a loop against its own deadline.
    int poll_fds(int timeout_ms) {
        m_fds[5].fd = m_death_fd;  // negative: ignored by poll
        for (auto& p : m_fds) p.revents = 0;
        const int n = ::poll(m_fds.data(), m_fds.size(), timeout_ms);
        if (n < 0) {
            if (errno == EINTR) return 0;
            throw error(errc::io_error, std::string("poll failed: ") + std::strerror(errno));
        }
        for (std::size_t i = 0; i < channel_order.size(); ++i)
            if (m_fds[i].revents != 0) m_maybe[i] = true;
        return n;
    }

    enum class read_result { message, rejected, none };

    // Reads one multipart message, if one is there.
    read_result read_one(channel ch, incoming& out) {
        m_parts.clear();
        auto got = zmq::recv_multipart(socket(ch), std::back_inserter(m_parts), zmq::recv_flags::dontwait);
        if (!got) return read_result::none;
        // Decoded where ZeroMQ put the frames, which are then freed unread:
        // tcp and ipc peers' frames are each allocated on their own (those
        // large enough for their pages to be handed back while parsing are
        // never slices of ZeroMQ's shared receive buffer), so a 100 MB
        // output is held once, not twice.
        m_views.clear();
        for (auto& p : m_parts) m_views.emplace_back(static_cast<const char*>(p.data()), p.size());
        // Into the caller's message: its strings' storage is reused.
        const bool accepted = m_codec.decode_view_into(m_views, out.message, nullptr, true);
        m_views.clear();
        m_parts.clear();
        if (!accepted) return read_result::rejected;
        out.channel = ch;
        return read_result::message;
    }

    frame_codec m_codec;
    zmq::socket_t m_shell;
    zmq::socket_t m_iopub;
    zmq::socket_t m_stdin;
    zmq::socket_t m_control;
    // After the sockets they watch, so they stop watching first.
    connection_watch m_stdin_watch{m_stdin, "stdin"};
    connection_watch m_iopub_watch{m_iopub, "iopub"};
    std::string m_iopub_endpoint;
    std::vector<zmq::message_t> m_parts;
    std::vector<std::string_view> m_views;
    int m_death_fd = -1;
    event_fd m_hb_event;
    // Whether each socket (in channel_order) may hold a message: not read
    // until it had none since its descriptor was last readable.
    std::array<bool, 4> m_maybe{true, true, true, true};
    int m_unpolled = 0;
    // The sockets' ZMQ_FDs, the heartbeat's event, the death fd.
    std::array<pollfd, 6> m_fds{};
    std::atomic<bool> m_hb_dead{false};
    std::unique_ptr<heartbeat> m_heartbeat;
};

}  // namespace

std::unique_ptr<transport> make_zmq_transport(const connection_info& info, const std::string& session,
                                              zmq_transport_options options) {
    return std::make_unique<zmq_transport>(info, session, options);
}

}  // namespace kernex
