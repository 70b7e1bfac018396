// MCP over Streamable HTTP (MCP 2025-06-18 / 2025-11-25), with Boost.Beast:
// one endpoint, /mcp. POST carries one JSON-RPC message: a notification or
// a response gets 202; tools/call gets an SSE stream (its progress
// notifications, then its result); other requests a JSON body. initialize
// opens an MCP session (Mcp-Session-Id); later requests must name it
// (400 without, 404 for an unknown or ended one), DELETE ends it. GET has no
// stream to offer (405). Every request must carry the bearer token
// (compared in constant time) and, when it has an Origin, a local one or
// one allowed (403: DNS rebinding). One thread per TCP connection.
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <optional>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "kernex/error.hpp"
#include "mcp/connection.hpp"
#include "mcp/server.hpp"
#include "wire/random_bytes.hpp"
#include "wire/sha256.hpp"

namespace kernex::mcp {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

std::string random_hex(std::size_t bytes) {
    std::vector<unsigned char> raw(bytes);
    detail::random_bytes(raw.data(), raw.size(), "a token");
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : raw) {
        out += hex[b >> 4];
        out += hex[b & 15];
    }
    return out;
}

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// http(s)://localhost, 127.0.0.1 or [::1], with any port.
bool local_origin(std::string_view origin) {
    const std::string o = lower(origin);
    for (std::string_view scheme : {"http://", "https://"}) {
        if (!o.starts_with(scheme)) continue;
        std::string_view rest = std::string_view(o).substr(scheme.size());
        for (std::string_view host : {"localhost", "127.0.0.1", "[::1]"}) {
            if (!rest.starts_with(host)) continue;
            std::string_view port = rest.substr(host.size());
            if (port.empty()) return true;
            if (port[0] != ':' || port.size() == 1) return false;
            return port.substr(1).find_first_not_of("0123456789") == std::string_view::npos;
        }
    }
    return false;
}

// What one request's answers are queued on for the HTTP thread to write.
class queue_outbox final : public outbox {
public:
    void send(const json& msg) override {
        std::lock_guard lock(m_mutex);
        m_queue.push_back(serialize(msg));
        m_cv.notify_all();
    }
    void finish() override {
        std::lock_guard lock(m_mutex);
        m_finished = true;
        m_cv.notify_all();
    }
    // The next message; nullopt once finished and drained.
    std::optional<std::string> next() {
        std::unique_lock lock(m_mutex);
        m_cv.wait(lock, [&] { return !m_queue.empty() || m_finished; });
        if (m_queue.empty()) return std::nullopt;
        std::string m = std::move(m_queue.front());
        m_queue.pop_front();
        return m;
    }

private:
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<std::string> m_queue;
    bool m_finished = false;
};

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

class http_server {
public:
    http_server(const server_options& options, http_options http) : m_engine(options), m_http(std::move(http)) {
        if (m_http.token.empty()) m_http.token = random_hex(32);
        boost::system::error_code ec;
        const auto address = asio::ip::make_address(m_http.host, ec);
        if (ec) throw error(errc::invalid_argument, "--host " + m_http.host + " is not an IP address");
        tcp::endpoint where(address, m_http.port);
        m_acceptor.open(where.protocol(), ec);
        if (!ec) m_acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
        if (!ec) m_acceptor.bind(where, ec);
        if (!ec) m_acceptor.listen(asio::socket_base::max_listen_connections, ec);
        if (ec)
            throw error(errc::io_error, "cannot listen on " + m_http.host + ":" + std::to_string(m_http.port) + ": " +
                                            ec.message());
    }

    std::string url() const {
        const auto ep = m_acceptor.local_endpoint();
        const std::string host = ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
        return "http://" + host + ":" + std::to_string(ep.port()) + "/mcp";
    }
    const std::string& token() const noexcept { return m_http.token; }

    void run(int stop_fd) {
        for (;;) {
            reap_threads();
            pollfd fds[2] = {{m_acceptor.native_handle(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
            const int n = ::poll(fds, stop_fd >= 0 ? 2 : 1, 1000);
            if (n < 0 && errno != EINTR) break;
            if (stop_fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP))) break;
            if (n <= 0 || !(fds[0].revents & POLLIN)) continue;
            boost::system::error_code ec;
            auto socket = std::make_shared<tcp::socket>(m_ioc);
            m_acceptor.accept(*socket, ec);
            if (ec) continue;
            // A client that sends nothing does not hold a thread for ever.
            timeval tv{120, 0};
            ::setsockopt(socket->native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            ::setsockopt(socket->native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            std::lock_guard lock(m_mutex);
            if (m_threads.size() >= 256) continue;  // closes it
            auto done = std::make_shared<std::atomic<bool>>(false);
            m_sockets.push_back(socket);
            m_threads.push_back({done, std::jthread([this, socket, done] {
                                     serve(*socket);
                                     done->store(true);
                                 })});
        }
        stop();
    }

private:
    struct worker {
        std::shared_ptr<std::atomic<bool>> done;
        std::jthread thread;
    };

    void reap_threads() {
        std::list<worker> finished;
        std::lock_guard lock(m_mutex);
        for (auto it = m_threads.begin(); it != m_threads.end();)
            if (it->done->load()) finished.splice(finished.end(), m_threads, it++);
            else ++it;
        std::erase_if(m_sockets, [](const std::shared_ptr<tcp::socket>& s) { return s.use_count() == 1; });
    }

    void stop() noexcept {
        boost::system::error_code ec;
        m_acceptor.close(ec);
        std::map<std::string, std::shared_ptr<connection>> clients;
        {
            std::lock_guard lock(m_mutex);
            m_stopping = true;
            clients.swap(m_clients);
        }
        for (auto& [id, c] : clients) c->close();  // cancels calls: their streams end
        std::list<worker> threads;
        {
            std::lock_guard lock(m_mutex);
            for (auto& s : m_sockets) s->shutdown(tcp::socket::shutdown_both, ec);
            threads.swap(m_threads);
        }
        threads.clear();  // joins
        m_engine.shutdown();
    }

    response reply(const request& req, http::status status, std::string body = {},
                   std::string_view type = "application/json") {
        response res{status, req.version()};
        res.set(http::field::server, "kernex");
        if (!body.empty()) res.set(http::field::content_type, std::string(type));
        res.body() = std::move(body);
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        return res;
    }
    response rpc_error(const request& req, http::status status, int code, const std::string& text) {
        return reply(req, status, serialize(make_error(nullptr, code, text)));
    }

    void serve(tcp::socket& socket) {
        beast::flat_buffer buffer;
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.header_limit(16 * 1024);
            parser.body_limit(m_engine.options().max_message_bytes);
            boost::system::error_code ec;
            http::read(socket, buffer, parser, ec);
            if (ec == http::error::body_limit) {
                request req;
                req.version(11);
                auto res = rpc_error(req, http::status::payload_too_large, rpc_code::invalid_request,
                                     "message refused: the limit is " +
                                         std::to_string(m_engine.options().max_message_bytes) + " bytes");
                res.keep_alive(false);
                http::write(socket, res, ec);
                break;
            }
            if (ec) break;
            request req = parser.release();
            if (!handle(socket, req)) break;
            if (!req.keep_alive()) break;
        }
        boost::system::error_code ec;
        socket.shutdown(tcp::socket::shutdown_both, ec);
        socket.close(ec);
    }

    // Answers one request; false when the connection must end.
    bool handle(tcp::socket& socket, const request& req) {
        boost::system::error_code ec;
        auto send = [&](response res) {
            http::write(socket, res, ec);
            return !ec;
        };
        const std::string_view target = sv(req.target());
        if (target.substr(0, target.find('?')) != "/mcp")
            return send(rpc_error(req, http::status::not_found, rpc_code::invalid_request, "the MCP endpoint is /mcp"));
        if (const auto origin = req.find(http::field::origin); origin != req.end()) {
            const std::string o(origin->value());
            const bool allowed = local_origin(o) || std::find(m_http.allowed_origins.begin(),
                                                              m_http.allowed_origins.end(), o) != m_http.allowed_origins.end();
            if (!allowed)
                return send(rpc_error(req, http::status::forbidden, rpc_code::invalid_request,
                                      "Origin " + o + " is not allowed (kernex mcp --allow-origin adds one)"));
        }
        {
            const auto auth = req.find(http::field::authorization);
            const std::string_view value = auth == req.end() ? std::string_view() : sv(auth->value());
            const bool bearer = value.size() > 7 && lower(value.substr(0, 7)) == "bearer ";
            if (!bearer || !detail::same_secret(value.substr(7), m_http.token)) {
                auto res = rpc_error(req, http::status::unauthorized, rpc_code::invalid_request,
                                     "a bearer token is required: Authorization: Bearer <the token kernex mcp printed>");
                res.set(http::field::www_authenticate, "Bearer");
                return send(std::move(res));
            }
        }
        if (req.method() == http::verb::delete_) return end_session(req, send);
        if (req.method() != http::verb::post) {
            auto res = reply(req, http::status::method_not_allowed);
            res.set(http::field::allow, "POST, DELETE");
            return send(std::move(res));
        }
        const std::string content_type = lower(sv(req[http::field::content_type]));
        if (!content_type.starts_with("application/json"))
            return send(rpc_error(req, http::status::unsupported_media_type, rpc_code::invalid_request,
                                  "Content-Type must be application/json"));
        const std::string accept = lower(sv(req[http::field::accept]));
        if (accept.find("application/json") == std::string::npos || accept.find("text/event-stream") == std::string::npos)
            return send(rpc_error(req, http::status::not_acceptable, rpc_code::invalid_request,
                                  "Accept must list application/json and text/event-stream"));

        parsed p = parse_message(req.body(), m_engine.options().max_message_bytes);
        if (!p.msg) return send(reply(req, http::status::bad_request, serialize(p.error_response)));
        const message& msg = *p.msg;

        std::shared_ptr<connection> client;
        std::string session_id;
        const bool initialize = msg.kind == message_kind::request && msg.method == "initialize";
        if (initialize) {
            std::lock_guard lock(m_mutex);
            if (m_stopping)
                return send(rpc_error(req, http::status::service_unavailable, rpc_code::invalid_request, "shutting down"));
            if (static_cast<int>(m_clients.size()) >= m_http.max_clients)
                return send(rpc_error(req, http::status::service_unavailable, rpc_code::invalid_request,
                                      "too many MCP sessions (" + std::to_string(m_http.max_clients) +
                                          "): end one with DELETE"));
            session_id = random_hex(16);
            client = std::make_shared<connection>(m_engine, "http:" + session_id);
        } else {
            const auto sid = req.find("Mcp-Session-Id");
            if (sid == req.end())
                return send(rpc_error(req, http::status::bad_request, rpc_code::invalid_request,
                                      "Mcp-Session-Id is required (initialize first)"));
            session_id = std::string(sid->value());
            {
                std::lock_guard lock(m_mutex);
                const auto it = m_clients.find(session_id);
                if (it != m_clients.end()) client = it->second;
            }
            if (!client)
                return send(rpc_error(req, http::status::not_found, rpc_code::invalid_request,
                                      "unknown or ended MCP session: initialize again"));
            if (const auto v = req.find("MCP-Protocol-Version"); v != req.end()) {
                const std::string version(v->value());
                if (!supported_protocol_version(version) || version != client->protocol_version())
                    return send(rpc_error(req, http::status::bad_request, rpc_code::invalid_request,
                                          "MCP-Protocol-Version " + version + " is not this session's (" +
                                              client->protocol_version() + ")"));
            }
        }

        auto out = std::make_shared<queue_outbox>();
        client->handle(msg, out);
        if (msg.kind != message_kind::request) {
            out->next();  // drains (nothing, or an error for a response nobody asked for)
            return send(reply(req, http::status::accepted));
        }
        if (initialize) {
            auto answer = out->next();
            const bool ok = answer && client->initialized();
            if (ok) {
                std::lock_guard lock(m_mutex);
                m_clients[session_id] = client;
            }
            auto res = reply(req, http::status::ok, answer.value_or(""));
            if (ok) res.set("Mcp-Session-Id", session_id);
            return send(std::move(res));
        }
        if (msg.method != "tools/call") {
            auto answer = out->next();
            return send(reply(req, http::status::ok, answer.value_or("")));
        }
        // An SSE stream: progress, then the result; the connection closes after it.
        std::string head = "HTTP/1.1 200 OK\r\nServer: kernex\r\nContent-Type: text/event-stream\r\n"
                           "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
        asio::write(socket, asio::buffer(head), ec);
        while (auto event = out->next()) {
            if (ec) continue;  // the client left: the call runs to its end, unread
            const std::string frame = "event: message\ndata: " + *event + "\n\n";
            asio::write(socket, asio::buffer(frame), ec);
        }
        return false;
    }

    template <typename Send>
    bool end_session(const request& req, Send& send) {
        const auto sid = req.find("Mcp-Session-Id");
        if (sid == req.end())
            return send(rpc_error(req, http::status::bad_request, rpc_code::invalid_request, "Mcp-Session-Id is required"));
        std::shared_ptr<connection> client;
        {
            std::lock_guard lock(m_mutex);
            const auto it = m_clients.find(std::string(sid->value()));
            if (it != m_clients.end()) {
                client = it->second;
                m_clients.erase(it);
            }
        }
        if (!client)
            return send(rpc_error(req, http::status::not_found, rpc_code::invalid_request, "unknown or ended MCP session"));
        client->close();
        return send(reply(req, http::status::ok));
    }

    engine m_engine;
    http_options m_http;
    asio::io_context m_ioc;
    tcp::acceptor m_acceptor{m_ioc};
    std::mutex m_mutex;
    bool m_stopping = false;
    std::map<std::string, std::shared_ptr<connection>> m_clients;  // by Mcp-Session-Id
    std::list<worker> m_threads;
    std::vector<std::shared_ptr<tcp::socket>> m_sockets;
};

}  // namespace

int serve_http(const server_options& options, http_options http, int stop_fd,
               const std::function<void(const std::string& url, const std::string& token)>& on_listening) {
    http_server server(options, std::move(http));
    if (on_listening) on_listening(server.url(), server.token());
    server.run(stop_fd);
    return 0;
}

}  // namespace kernex::mcp
