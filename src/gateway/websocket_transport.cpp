// The kernel websocket with Boost.Beast, on the caller's thread. A read is
// always pending on an open connection; receive() runs the connection's
// io_context until a frame arrives, the socket fails or the deadline
// passes, so a timeout never cancels a read half-way. Frames are decoded
// in arrival order into a queue (with markers for server-side restarts), so
// what arrived before a death is delivered before the death is reported.
#include "gateway/websocket_transport.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <deque>
#include <iostream>
#include <optional>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "gateway/gateway_url.hpp"
#include "gateway/net.hpp"
#include "gateway/ws_codec.hpp"
#include "kernex/error.hpp"
#include "wire/json_text.hpp"

namespace kernex::gateway_detail {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

std::string string_field(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

struct raw_frame {
    std::string data;
    bool binary = false;
};

// One websocket connection and the io_context that drives it. Handlers
// only touch members, and are destroyed with the io_context when the
// connection is dropped, so an abandoned operation never runs later.
class connection {
public:
    virtual ~connection() = default;
    // Connects, TLS, websocket upgrade. Throws kernex::error.
    virtual void open(const endpoint& ep, const std::string& target, std::string_view kernel_id,
                      steady::time_point deadline) = 0;
    virtual void start_read() = 0;
    virtual void start_write(ws_payload payload) = 0;
    virtual void start_close() = 0;

    asio::io_context ioc;  // first member: destroyed after the stream of a derived class
    std::deque<raw_frame> frames;
    std::optional<std::string> failure;  // why the socket stopped working
    bool write_done = false;
    bool close_done = false;
};

std::string describe(const error_code& ec, const std::string& close_reason) {
    if (ec == websocket::error::closed)
        return "the server closed the websocket" + (close_reason.empty() ? std::string() : " (" + close_reason + ")");
    if (ec == asio::error::eof || ec == asio::error::connection_reset || ec == beast::error::timeout)
        return "the connection was closed (" + ec.message() + ")";
    return ec.message();
}

template <typename Next>
class connection_of final : public connection {
public:
    static constexpr bool tls = !std::is_same_v<Next, tcp::socket>;

    explicit connection_of(const endpoint& ep) : m_ws(make(ep)) {}

    void open(const endpoint& ep, const std::string& target, std::string_view kernel_id,
              steady::time_point deadline) override {
        const std::string what = "websocket " + ep.url.base_path + target.substr(0, target.find('?'));
        if constexpr (tls) {
            connect_socket(ioc, m_ws.next_layer().next_layer(), ep, deadline, what);
            tls_handshake(ioc, m_ws.next_layer(), ep, deadline, what);
        } else {
            connect_socket(ioc, m_ws.next_layer(), ep, deadline, what);
        }
        m_ws.set_option(websocket::stream_base::decorator([headers = ep.headers](websocket::request_type& req) {
            req.set(beast::http::field::user_agent, "kernex/0.1");
            for (const auto& [name, value] : headers) req.set(name, value);
        }));
        m_ws.read_message_max(codec_options{}.max_message_bytes);
        websocket::response_type res;
        error_code ec;
        bool done = false;
        m_ws.async_handshake(res, ep.url.host_header(), ep.url.base_path + target, [&](const error_code& e) {
            ec = e;
            done = true;
        });
        if (!run_until(ioc, deadline, [&] { return done; })) throw_timeout(ep, what);
        if (ec == websocket::error::upgrade_declined)
            throw_http_error(ep,
                             {static_cast<int>(res.result_int()), std::string(res.reason()), res.body(),
                              std::string(res[beast::http::field::location]), {}},
                             what, kernel_id);
        if (ec) throw_network_error(ep, "open the websocket of", what, ec);
        quick_ack();
    }

    void start_read() override {
        m_ws.async_read(m_in, [this](const error_code& ec, std::size_t) {
            if (ec) {
                if (!failure) failure = describe(ec, close_text());
                return;
            }
            frames.push_back({beast::buffers_to_string(m_in.data()), !m_ws.got_text()});
            m_in.consume(m_in.size());
            quick_ack();
            start_read();
        });
    }

    void start_write(ws_payload payload) override {
        m_out = std::move(payload);
        write_done = false;
        m_ws.text(!m_out.binary);
        m_ws.async_write(asio::buffer(m_out.data), [this](const error_code& ec, std::size_t) {
            write_done = true;
            if (ec && !failure) failure = describe(ec, {});
        });
    }

    void start_close() override {
        m_ws.async_close(websocket::close_code::normal, [this](const error_code&) { close_done = true; });
    }

private:
    // Jupyter Server leaves Nagle's algorithm on for its websockets: its
    // next small message waits until the previous one is acknowledged, and
    // Linux delays ACKs by up to 40 ms. Acknowledging at once after each
    // message (TCP_QUICKACK is not sticky: set again each time) removes that
    // wait from every cell.
    void quick_ack() noexcept {
        int one = 1;
        ::setsockopt(beast::get_lowest_layer(m_ws).native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }

    std::string close_text() const {
        const auto& r = m_ws.reason();
        if (r.code == websocket::close_code::none) return {};
        std::string text = "code " + std::to_string(static_cast<unsigned>(r.code));
        if (!r.reason.empty()) text += ": " + std::string(r.reason.data(), r.reason.size());
        return text;
    }

    websocket::stream<Next> make(const endpoint& ep) {
        if constexpr (tls)
            return websocket::stream<Next>(ioc, *ep.tls);
        else
            return websocket::stream<Next>(ioc);
    }

    websocket::stream<Next> m_ws;
    beast::flat_buffer m_in;
    ws_payload m_out;
};

class websocket_transport final : public ws_transport {
public:
    websocket_transport(std::shared_ptr<const endpoint> ep, const std::string& kernel_id, const std::string& session)
        : m_ep(std::move(ep)),
          m_kernel_id(kernel_id),
          m_target("/api/kernels/" + percent_encode(kernel_id) + "/channels?session_id=" + percent_encode(session)) {}

    ~websocket_transport() override {
        if (!m_conn || m_conn->failure) return;
        // A polite close, briefly: the server stops buffering for us.
        try {
            m_conn->start_close();
            run_until(m_conn->ioc, steady::now() + 500ms, [&] { return m_conn->close_done || m_conn->failure; });
        } catch (...) {
        }
    }

    void connect(steady::time_point deadline) {
        std::unique_ptr<connection> c;
        if (m_ep->tls)
            c = std::make_unique<connection_of<asio::ssl::stream<tcp::socket>>>(*m_ep);
        else
            c = std::make_unique<connection_of<tcp::socket>>(*m_ep);
        c->open(*m_ep, m_target, m_kernel_id, deadline);
        c->start_read();
        m_conn = std::move(c);
        m_last_traffic = steady::now();
    }

    void send(channel ch, const message& msg) override {
        if (!m_dead_reason.empty()) return;  // receive() reports the death
        auto payload = encode_ws_message(ch, msg);
        settle_socket();
        for (int attempt = 0; attempt < 2 && m_dead_reason.empty(); ++attempt) {
            m_conn->start_write(payload);
            auto deadline = steady::now() + m_ep->options.request_timeout;
            bool written = run_until(m_conn->ioc, deadline, [&] { return m_conn->write_done; });
            if (written && !m_conn->failure) return;
            // Not sent: after a reconnect, send it again (once).
            take_frames();
            on_drop(written ? *m_conn->failure
                            : "a write did not complete in " + seconds_text(m_ep->options.request_timeout));
        }
    }

    receive_status receive(steady::time_point deadline, incoming& out) override {
        for (;;) {
            if (m_conn) poll();
            take_frames();
            if (!m_ready.empty()) {
                auto item = std::move(m_ready.front());
                m_ready.pop_front();
                if (!item) return receive_status::peer_dead;  // the server restarted the kernel
                out = std::move(*item);
                return receive_status::message;
            }
            if (!m_dead_reason.empty()) return receive_status::peer_dead;
            if (m_conn->failure) {
                on_drop(*m_conn->failure);
                continue;
            }
            auto now = steady::now();
            if (now >= deadline) return receive_status::timeout;
            auto check_at = std::max(m_last_traffic, m_last_check) + m_ep->options.liveness_period;
            if (now >= check_at) {
                check_liveness();
                continue;
            }
            run_until(m_conn->ioc, std::min(deadline, check_at),
                      [&] { return !m_conn->frames.empty() || m_conn->failure.has_value(); });
        }
    }

    void watch_death_fd(int) override {}  // a remote kernel has no local process to watch

    reject_counters rejected() const override { return m_rejected; }

    void settle() override {
        if (m_dead_reason.empty()) settle_socket();
        take_frames();
        std::erase_if(m_ready, [](const std::optional<incoming>& item) { return !item.has_value(); });
    }

    void set_events(ws_events events) override { m_events = std::move(events); }

    const std::string& dead_reason() const noexcept override { return m_dead_reason; }

private:
    // Runs the handlers that are ready, without waiting.
    void poll() {
        if (m_conn->ioc.stopped()) m_conn->ioc.restart();
        m_conn->ioc.poll();
    }

    // Before a write: take in what arrived and reconnect a socket the server closed meanwhile.
    void settle_socket() {
        if (!m_conn) return;
        poll();
        take_frames();
        if (m_conn->failure) on_drop(*m_conn->failure);
    }

    void take_frames() {
        if (!m_conn) return;
        while (!m_conn->frames.empty()) {
            auto frame = std::move(m_conn->frames.front());
            m_conn->frames.pop_front();
            m_last_traffic = steady::now();
            reject_reason why{};
            auto in = decode_ws_message(frame.data, frame.binary, m_codec, why);
            if (!in) {
                ++m_rejected.by_reason[static_cast<std::size_t>(why)];
                continue;
            }
            m_reconnect_unproven = false;
            // The server's own statuses (no parent): it restarted the kernel
            // after it died, or gave up on it.
            if (in->channel == channel::iopub && in->message.msg_type() == "status" &&
                in->message.parent_header.empty()) {
                auto state = string_field(in->message.content, "execution_state");
                if (state == "restarting") {
                    m_ready.emplace_back(std::nullopt);
                    if (m_events.restarted) m_events.restarted();
                    continue;
                }
                if (state == "dead") {
                    go_dead("the server reports kernel " + m_kernel_id + " dead (it could not be restarted)");
                    continue;
                }
            }
            m_ready.emplace_back(std::move(*in));
        }
    }

    void notice(const std::string& text) {
        if (m_ep->options.on_notice)
            m_ep->options.on_notice(text);
        else
            std::cerr << "kernex: " << text << "\n" << std::flush;
    }

    void go_dead(std::string reason) {
        if (!m_dead_reason.empty()) return;
        m_dead_reason = std::move(reason);
        m_conn.reset();
        notice(m_dead_reason);
        if (m_events.dead) m_events.dead();
    }

    // The socket stopped working: one reconnection attempt (none when the
    // last reconnection has not yet carried a message and is recent).
    void on_drop(std::string reason) {  // by value: it may live in the connection this drops
        m_conn.reset();
        if (m_reconnect_unproven && steady::now() - m_last_reconnect < 10s) {
            go_dead("the websocket to kernel " + m_kernel_id + " dropped again right after reconnecting (" + reason + ")");
            return;
        }
        try {
            connect(steady::now() + m_ep->options.request_timeout);
        } catch (const std::exception& e) {
            go_dead(server_gone_reason().value_or("the websocket to kernel " + m_kernel_id + " dropped (" + reason +
                                                  ") and reconnecting failed: " + e.what()));
            return;
        }
        m_reconnect_unproven = true;
        m_last_reconnect = steady::now();
        notice("the websocket to kernel " + m_kernel_id + " dropped (" + reason + "); reconnected");
    }

    // Why the server behind a dropped websocket is gone, when it says so: a
    // hub that stopped the user's server answers for it.
    std::optional<std::string> server_gone_reason() {
        try {
            auto res = http_request(*m_ep, "GET", "/api/kernels/" + percent_encode(m_kernel_id), {},
                                    steady::now() + std::min<std::chrono::milliseconds>(m_ep->options.request_timeout, 5s));
            if (const std::string hub = hub_explanation(*m_ep, res); !hub.empty())
                return "the Jupyter server running kernel " + m_kernel_id + " stopped (its URL now answers HTTP " +
                       std::to_string(res.status) + "): " + hub;
        } catch (const error&) {
            // Unreachable: the reconnection's own error says more.
        }
        return std::nullopt;
    }

    // The socket is quiet: does the server still have the kernel?
    void check_liveness() {
        m_last_check = steady::now();
        auto deadline = m_last_check + std::min<std::chrono::milliseconds>(m_ep->options.request_timeout, 10s);
        try {
            auto res = http_request(*m_ep, "GET", "/api/kernels/" + percent_encode(m_kernel_id), {}, deadline);
            if (res.status == 404 && res.redirected.empty()) {
                go_dead("kernel " + m_kernel_id + " no longer exists on the server (it was shut down or deleted)");
            } else if (const std::string hub = hub_explanation(*m_ep, res); !hub.empty()) {
                // A hub sends requests for a stopped user server elsewhere.
                go_dead("the Jupyter server running kernel " + m_kernel_id + " stopped (its URL now answers HTTP " +
                        std::to_string(res.status) + "): " + hub);
            } else if (res.status == 200) {
                json model;
                if (wire::parse_object(res.body, m_codec.max_json_depth, model) &&
                    string_field(model, "execution_state") == "dead")
                    go_dead("the server reports kernel " + m_kernel_id + " dead");
            }
        } catch (const error& e) {
            // Unreachable: the websocket is probably gone too; a slow answer is not a death.
            if (e.code() != errc::timeout) on_drop(std::string("the server did not answer: ") + e.what());
        }
    }

    std::shared_ptr<const endpoint> m_ep;
    std::string m_kernel_id;
    std::string m_target;
    std::unique_ptr<connection> m_conn;
    std::deque<std::optional<incoming>> m_ready;  // nullopt: the server restarted the kernel here
    std::string m_dead_reason;
    bool m_reconnect_unproven = false;
    steady::time_point m_last_reconnect{};
    steady::time_point m_last_traffic{};
    steady::time_point m_last_check{};
    reject_counters m_rejected{};
    codec_options m_codec{};
    ws_events m_events;
};

}  // namespace

std::unique_ptr<ws_transport> open_websocket(std::shared_ptr<const endpoint> ep, const std::string& kernel_id,
                                             const std::string& session, steady::time_point deadline) {
    auto t = std::make_unique<websocket_transport>(std::move(ep), kernel_id, session);
    t->connect(deadline);
    return t;
}

}  // namespace kernex::gateway_detail
