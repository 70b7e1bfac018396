// The gateway's network steps with Boost.Asio/Beast on the caller's thread:
// resolving, connecting, TLS (SNI, certificate and host name checks) and
// one HTTP request per connection. Each step is an async operation driven by
// io_context::run_one_until, so one deadline bounds the whole request; a
// request that runs out of time is abandoned with its io_context (pending
// handlers are destroyed, never run).
#include "gateway/net.hpp"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "kernex/error.hpp"
#include "tls/tls_client.hpp"

namespace kernex::gateway_detail {

namespace http = boost::beast::http;
using boost::system::error_code;

namespace {

bool has_line_break(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

}  // namespace

std::string seconds_text(std::chrono::milliseconds ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g s", static_cast<double>(ms.count()) / 1000.0);
    return buf;
}

std::shared_ptr<const endpoint> make_endpoint(const gateway_options& options) {
    auto ep = std::make_shared<endpoint>();
    ep->url = parse_gateway_url(options.url);
    ep->options = options;
    if (ep->options.token.empty()) ep->options.token = ep->url.token;
    if (has_line_break(ep->options.token))
        throw error(errc::invalid_argument, "the gateway token contains a line break");
    if (!ep->options.token.empty()) ep->headers.emplace_back("Authorization", "token " + ep->options.token);
    for (const auto& [name, value] : options.headers) {
        if (name.empty() || has_line_break(name) || has_line_break(value) || name.find(':') != std::string::npos)
            throw error(errc::invalid_argument, "gateway header '" + name + "' is not a valid HTTP header name and value");
        ep->headers.emplace_back(name, value);
    }
    if (ep->options.request_timeout.count() <= 0)
        throw error(errc::invalid_argument, "the gateway request_timeout must be positive");
    if (ep->url.tls)
        ep->tls = tls_detail::make_client_context(
            {.ca_file = options.ca_file, .verify = options.verify_tls, .code = errc::gateway_error});
    return ep;
}

const gateway_url& url_of(const endpoint& ep) noexcept { return ep.url; }
const gateway_options& options_of(const endpoint& ep) noexcept { return ep.options; }

bool run_until(asio::io_context& ioc, steady::time_point deadline, const std::function<bool()>& done) {
    while (!done()) {
        if (ioc.stopped()) ioc.restart();
        // run_one_until waits at most a second at a time, so max() is fine.
        if (ioc.run_one_until(deadline) == 0) return done();
    }
    return true;
}

void throw_network_error(const endpoint& ep, std::string_view step, std::string_view what, const error_code& ec) {
    std::string msg = "cannot " + std::string(step) + " the Jupyter server at " + ep.url.display + " (" +
                      std::string(what) + "): " + ec.message();
    if (ec == asio::error::connection_refused)
        msg += "; is it running, and is the URL right? (--gateway, KERNEX_GATEWAY_URL)";
    else if (ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again)
        msg += "; check the host name in the URL";
    else if (ec == http::error::bad_version || ec == http::error::bad_status || ec == http::error::bad_field)
        msg += "; it did not answer HTTP: is the scheme right (http vs https)?";
    throw error(errc::gateway_error, msg);
}

void throw_timeout(const endpoint& ep, std::string_view what) {
    throw error(errc::timeout, "the Jupyter server at " + ep.url.display + " did not answer " + std::string(what) +
                                   " in time");
}

void connect_socket(asio::io_context& ioc, tcp::socket& socket, const endpoint& ep, steady::time_point deadline,
                    std::string_view what) {
    std::vector<tcp::endpoint> targets;
    error_code ec;
    if (ep.url.host_is_ip) {
        targets.emplace_back(asio::ip::make_address(ep.url.host), static_cast<unsigned short>(std::stoi(ep.url.port)));
    } else {
        tcp::resolver resolver(ioc);
        bool resolved = false;
        resolver.async_resolve(ep.url.host, ep.url.port, [&](const error_code& e, tcp::resolver::results_type r) {
            ec = e;
            for (const auto& entry : r) targets.push_back(entry.endpoint());
            resolved = true;
        });
        if (!run_until(ioc, deadline, [&] { return resolved; })) throw_timeout(ep, what);
        if (ec) throw_network_error(ep, "resolve the host of", what, ec);
    }
    bool connected = false;
    asio::async_connect(socket, targets, [&](const error_code& e, const tcp::endpoint&) {
        ec = e;
        connected = true;
    });
    if (!run_until(ioc, deadline, [&] { return connected; })) throw_timeout(ep, what);
    if (ec) throw_network_error(ep, "connect to", what, ec);
    socket.set_option(tcp::no_delay(true), ec);
}

void tls_handshake(asio::io_context& ioc, asio::ssl::stream<tcp::socket>& stream, const endpoint& ep,
                   steady::time_point deadline, std::string_view what) {
    SSL* ssl = stream.native_handle();
    tls_detail::expect_peer(ssl, ep.url.host, ep.options.verify_tls, errc::gateway_error);
    error_code ec;
    bool done = false;
    stream.async_handshake(asio::ssl::stream_base::client, [&](const error_code& e) {
        ec = e;
        done = true;
    });
    if (!run_until(ioc, deadline, [&] { return done; })) throw_timeout(ep, what);
    if (!ec) return;
    if (tls_detail::server_rejected(ssl, ep.options.verify_tls))
        throw error(errc::gateway_error,
                    "TLS certificate verification failed for " + ep.url.display + ": " +
                        X509_verify_cert_error_string(SSL_get_verify_result(ssl)) +
                        "; pass the CA that signed the server's certificate with --gateway-ca "
                        "(gateway_options::ca_file), or use http:// on a trusted network");
    throw_network_error(ep, "make a TLS connection to", what, ec);
}

namespace {

template <typename Stream>
http_response exchange(asio::io_context& ioc, Stream& stream, const endpoint& ep, http::request<http::string_body>& req,
                       steady::time_point deadline, const std::string& what) {
    error_code ec;
    bool done = false;
    http::async_write(stream, req, [&](const error_code& e, std::size_t) {
        ec = e;
        done = true;
    });
    if (!run_until(ioc, deadline, [&] { return done; })) throw_timeout(ep, what);
    if (ec) throw_network_error(ep, "send a request to", what, ec);
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    done = false;
    http::async_read(stream, buffer, parser, [&](const error_code& e, std::size_t) {
        ec = e;
        done = true;
    });
    if (!run_until(ioc, deadline, [&] { return done; })) throw_timeout(ep, what);
    if (ec) throw_network_error(ep, "read the answer of", what, ec);
    auto& res = parser.get();
    return {static_cast<int>(res.result_int()), std::string(res.reason()), std::move(res.body()),
            std::string(res[http::field::location]), {}, res.find("X-JupyterHub-Version") != res.end()};
}

}  // namespace

namespace {

// The path of location when it names the endpoint's own origin ("/hub/x",
// or "http://host:port/hub/x" with the endpoint's scheme, host and port);
// empty otherwise.
std::string same_origin_path(const endpoint& ep, const std::string& location) {
    if (location.starts_with("/") && !location.starts_with("//")) return location;
    const std::string origin = (ep.url.tls ? "https://" : "http://") + ep.url.host_header();
    if (location.size() > origin.size() && location.starts_with(origin) && location[origin.size()] == '/')
        return location.substr(origin.size());
    return {};
}

http_response request_target(const endpoint& ep, std::string_view method, const std::string& target,
                             const std::string& body, steady::time_point deadline, const std::string& what) {
    http::request<http::string_body> req;
    req.method(http::string_to_verb(boost::beast::string_view(method.data(), method.size())));
    req.target(target);
    req.version(11);
    req.set(http::field::host, ep.url.host_header());
    req.set(http::field::user_agent, "kernex/0.1");
    req.set(http::field::accept, "application/json");
    for (const auto& [name, value] : ep.headers) req.set(name, value);
    req.keep_alive(false);
    if (!body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = body;
    }
    req.prepare_payload();
    // Declared before the streams: destroyed last, dropping any handler a
    // timed-out step left pending.
    asio::io_context ioc;
    if (ep.tls) {
        asio::ssl::stream<tcp::socket> stream(ioc, *ep.tls);
        connect_socket(ioc, stream.next_layer(), ep, deadline, what);
        tls_handshake(ioc, stream, ep, deadline, what);
        return exchange(ioc, stream, ep, req, deadline, what);
    }
    tcp::socket socket(ioc);
    connect_socket(ioc, socket, ep, deadline, what);
    auto res = exchange(ioc, socket, ep, req, deadline, what);
    error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    return res;
}

}  // namespace

http_response http_request(const endpoint& ep, std::string_view method, const std::string& path,
                           const std::string& body, steady::time_point deadline) {
    const std::string what = std::string(method) + " " + path;
    http_response res = request_target(ep, method, ep.url.base_path + path, body, deadline, what);
    if (res.status < 300 || res.status > 399 || res.location.empty()) return res;
    const std::string next = same_origin_path(ep, res.location);
    if (next.empty()) return res;
    const bool as_get = res.status == 303 || ((res.status == 301 || res.status == 302) && method == "POST");
    http_response followed = request_target(ep, as_get ? "GET" : method, next, as_get ? std::string() : body,
                                            deadline, what);
    followed.redirected = next;
    if (followed.location.empty()) followed.location = res.location;
    followed.from_hub = followed.from_hub || res.from_hub;
    return followed;
}

}  // namespace kernex::gateway_detail
