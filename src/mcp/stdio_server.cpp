// MCP over stdio: newline-delimited JSON-RPC on in_fd/out_fd. A line longer
// than max_message_bytes is not kept: the rest of it is read and thrown
// away, and the client gets an error (memory stays bounded whatever it sends).
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <string>

#include "kernex/error.hpp"
#include "mcp/connection.hpp"
#include "mcp/server.hpp"

namespace kernex::mcp {

namespace {

class stdout_outbox final : public outbox {
public:
    explicit stdout_outbox(int fd) : m_fd(fd) {}
    void send(const nlohmann::json& msg) override {
        std::string line = serialize(msg);
        line += '\n';
        std::lock_guard lock(m_mutex);
        if (m_broken) return;
        std::size_t done = 0;
        while (done < line.size()) {
            const ssize_t n = ::write(m_fd, line.data() + done, line.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                m_broken = true;  // the client is gone; EOF on stdin follows
                return;
            }
            done += static_cast<std::size_t>(n);
        }
    }

private:
    int m_fd;
    std::mutex m_mutex;
    bool m_broken = false;
};

}  // namespace

int serve_stdio(const server_options& options, int in_fd, int out_fd, int stop_fd) {
    engine e(options);
    auto out = std::make_shared<stdout_outbox>(out_fd);
    connection conn(e, "stdio");
    const std::size_t cap = options.max_message_bytes;

    line_splitter lines(cap);
    const auto on_line = [&](std::string_view line) { conn.handle_bytes(line, out); };
    const auto on_oversize = [&](std::size_t bytes) {
        out->send(make_error(nullptr, rpc_code::invalid_request,
                             "message of " + std::to_string(bytes) + " bytes refused: the limit is " +
                                 std::to_string(cap) + " bytes"));
    };
    char buf[65536];
    for (;;) {
        pollfd fds[2] = {{in_fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
        const int n = ::poll(fds, stop_fd >= 0 ? 2 : 1, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (stop_fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP))) break;
        if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t got = ::read(in_fd, buf, sizeof buf);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) break;  // EOF: the client is gone
        lines.feed(std::string_view(buf, static_cast<std::size_t>(got)), on_line, on_oversize);
    }
    conn.close();
    e.shutdown();
    return 0;
}

}  // namespace kernex::mcp
