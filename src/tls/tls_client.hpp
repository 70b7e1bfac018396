// The TLS client pieces shared by the gateway's https (gateway/net.cpp) and
// the docker client's tcp+TLS (docker/docker_client.cpp): an OpenSSL context
// with a CA and an optional client certificate, the server name and host
// checks set on a stream before its handshake, and what a failed handshake
// or a TLS alert means, in words. Internal; includes Boost.Asio's ssl.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include "kernex/error.hpp"

namespace kernex::tls_detail {

struct client_settings {
    std::optional<std::filesystem::path> ca_file;  // unset: the system's CAs
    std::filesystem::path cert_file{};             // a client certificate (PEM); empty: none
    std::filesystem::path key_file{};              // its private key (PEM); set with cert_file
    bool verify = true;                            // verify the server's certificate
    errc code = errc::io_error;                    // what the errors thrown here carry
};

// A TLS 1.2+ client context. Throws kernex::error(settings.code) when a file
// is missing (not_found), cannot be loaded, the key does not match the
// certificate, or the client certificate has expired or is not valid yet
// (saying since when and what to do).
std::shared_ptr<boost::asio::ssl::context> make_client_context(const client_settings& settings);

// Before the handshake: SNI for a host name and, when verify, the check that
// the certificate names host (an IP address or a DNS name). Throws kernex::error(code).
void expect_peer(SSL* ssl, const std::string& host, bool verify, errc code);

// What went wrong in a handshake or on a TLS connection, in words: the
// verification result when the server's certificate was refused, the alert
// the peer sent (a client certificate refused, expired or required), or
// that the peer does not speak TLS. Empty when ec is nothing TLS-specific.
std::string describe_failure(SSL* ssl, const boost::system::error_code& ec, bool verify);

// True when the handshake failed because the server's certificate did not verify.
bool server_rejected(SSL* ssl, bool verify);

}  // namespace kernex::tls_detail
