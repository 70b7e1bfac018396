// TLS client pieces on OpenSSL through Boost.Asio's ssl::context: the
// context (CA, client certificate checked for its dates and its key), the
// peer checks, and failures in words.
#include "tls/tls_client.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>

namespace kernex::tls_detail {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using boost::system::error_code;

namespace {

std::string asn1_time_text(const ASN1_TIME* t) {
    BIO* bio = BIO_new(BIO_s_mem());
    if (!bio) return "?";
    ASN1_TIME_print(bio, t);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(n > 0 ? n : 0));
    BIO_free(bio);
    return out;
}

void require_file(const fs::path& file, const char* what) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec))
        throw error(errc::not_found, std::string("the TLS ") + what + " " + file.string() +
                                         (fs::exists(file, ec) ? " is not a file" : " does not exist"));
}

}  // namespace

std::shared_ptr<asio::ssl::context> make_client_context(const client_settings& s) {
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    error_code ec;
    if (s.ca_file) {
        require_file(*s.ca_file, "CA file");
        ctx->load_verify_file(s.ca_file->string(), ec);
        if (ec)
            throw error(s.code, "cannot load the CA file " + s.ca_file->string() + ": " + ec.message() +
                                    " (it must hold PEM certificates)");
    } else {
        ctx->set_default_verify_paths(ec);
    }
    ctx->set_verify_mode(s.verify ? asio::ssl::verify_peer : asio::ssl::verify_none);
    if (s.cert_file.empty() != s.key_file.empty())
        throw error(errc::invalid_argument, "a TLS client certificate needs its key and a key its certificate");
    if (s.cert_file.empty()) return ctx;
    require_file(s.cert_file, "client certificate");
    require_file(s.key_file, "client key");
    ctx->use_certificate_chain_file(s.cert_file.string(), ec);
    if (ec)
        throw error(s.code, "cannot load the TLS client certificate " + s.cert_file.string() + ": " + ec.message() +
                                " (it must be a PEM certificate)");
    ctx->use_private_key_file(s.key_file.string(), asio::ssl::context::pem, ec);
    if (ec)
        throw error(s.code, "cannot load the TLS client key " + s.key_file.string() + ": " + ec.message() +
                                " (it must be an unencrypted PEM private key)");
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
        throw error(s.code, "the TLS client key " + s.key_file.string() + " does not belong to the certificate " +
                                s.cert_file.string());
    // A server refuses an expired certificate with a bare "bad certificate"
    // alert: say it here, with the date.
    if (const X509* cert = SSL_CTX_get0_certificate(ctx->native_handle())) {
        if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
            throw error(s.code, "the TLS client certificate " + s.cert_file.string() + " expired on " +
                                    asn1_time_text(X509_get0_notAfter(cert)) +
                                    ": make a new one, signed by the CA the server trusts");
        if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
            throw error(s.code, "the TLS client certificate " + s.cert_file.string() + " is not valid before " +
                                    asn1_time_text(X509_get0_notBefore(cert)) + ": check this machine's clock");
    }
    return ctx;
}

void expect_peer(SSL* ssl, const std::string& host, bool verify, errc code) {
    error_code ec;
    asio::ip::make_address(host, ec);
    const bool is_ip = !ec;
    if (!is_ip && !SSL_set_tlsext_host_name(ssl, host.c_str()))
        throw error(code, "cannot set the TLS server name for " + host);
    if (!verify) return;
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    const int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                         : X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
    if (!ok) throw error(code, "cannot set up TLS host name verification for " + host);
}

bool server_rejected(SSL* ssl, bool verify) { return verify && SSL_get_verify_result(ssl) != X509_V_OK; }

std::string describe_failure(SSL* ssl, const error_code& ec, bool verify) {
    if (server_rejected(ssl, verify))
        return std::string("the server's certificate did not verify (") +
               X509_verify_cert_error_string(SSL_get_verify_result(ssl)) +
               "): the CA given is not the one that signed it, or the certificate does not name this host";
    if (ec == asio::ssl::error::stream_truncated)
        return "the server closed the TLS connection abruptly (it may have refused the client certificate)";
    if (ec.category() != asio::error::get_ssl_category()) return {};
    const int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    // A server that wants a client certificate and got none sends one of these.
    if (!SSL_get_certificate(ssl) &&
        (reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED || reason == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
         reason == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE))
        return "the server requires a client certificate and none was sent";
    switch (reason) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
        return "the server does not speak TLS on this port (it answered something else: plain HTTP?)";
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return "the server requires a client certificate and none was sent";
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        return "the server refused the client certificate (bad certificate): it is not signed by a CA the server "
               "trusts";
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        return "the server refused the client certificate: it has expired";
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
        return "the server ended the TLS handshake (handshake failure): it may require a client certificate, or "
               "share no cipher with OpenSSL's";
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return "the server's certificate did not verify";
    default:
        return {};
    }
}

}  // namespace kernex::tls_detail
