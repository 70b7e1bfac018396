// Boost.Asio pieces shared by the gateway's REST requests (net.cpp) and its
// websocket (websocket_transport.cpp): internal, the only gateway header
// that includes Boost. Everything runs on the caller's thread: async
// operations driven by io_context::run_one_until against a deadline.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include "gateway/http.hpp"

namespace kernex::gateway_detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct endpoint {
    gateway_url url;
    gateway_options options;
    std::vector<std::pair<std::string, std::string>> headers;  // Authorization first, then the user's
    std::shared_ptr<asio::ssl::context> tls;                    // https only
};

// Runs ioc until done() holds or the deadline passes; returns done().
bool run_until(asio::io_context& ioc, steady::time_point deadline, const std::function<bool()>& done);

// Resolves the endpoint's host and connects socket, by deadline. what names
// the operation in messages. Throws gateway_error or timeout.
void connect_socket(asio::io_context& ioc, tcp::socket& socket, const endpoint& ep, steady::time_point deadline,
                    std::string_view what);

// TLS handshake with SNI and (unless verify_tls is off) certificate and host
// name verification. Throws gateway_error (saying why verification failed) or timeout.
void tls_handshake(asio::io_context& ioc, asio::ssl::stream<tcp::socket>& stream, const endpoint& ep,
                   steady::time_point deadline, std::string_view what);

// Throws gateway_error for a failed network step: "cannot <step> the Jupyter
// server at URL (<what>): <reason>" with a hint for refused connections.
[[noreturn]] void throw_network_error(const endpoint& ep, std::string_view step, std::string_view what,
                                      const boost::system::error_code& ec);
[[noreturn]] void throw_timeout(const endpoint& ep, std::string_view what);

}  // namespace kernex::gateway_detail
