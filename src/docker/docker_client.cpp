#include "kernex/docker_client.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <set>
#include <variant>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/http/file_body.hpp>
#include <boost/asio/ssl/error.hpp>

#include "docker/containers.hpp"
#include "docker/exec_stream.hpp"
#include "kernex/error.hpp"
#include "tls/tls_client.hpp"

namespace kernex {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using steady = std::chrono::steady_clock;
using socket_type = net::generic::stream_protocol::socket;
using tls_socket = net::ssl::stream<socket_type>;
// One request's connection: the plain socket (unix or tcp) or TLS over tcp.
// What reads and writes is written once, as templates over the stream.
using connection = std::variant<socket_type, tls_socket>;
using error_code = boost::system::error_code;
namespace fs = std::filesystem;

socket_type& lowest(socket_type& s) { return s; }
socket_type& lowest(tls_socket& s) { return s.next_layer(); }
void close_connection(connection& c) {
    std::visit(
        [](auto& s) {
            error_code ignored;
            lowest(s).close(ignored);
        },
        c);
}

// The newest API version kernex was written against: Debian 12's dockerd 20.10.
constexpr int our_api_major = 1;
constexpr int our_api_minor = 41;
// Older daemons lack NanoCpus and the exec fields kernex relies on.
constexpr int min_api_minor = 25;

struct parsed_host {
    bool is_unix = true;
    std::string path;  // unix
    std::string name;  // tcp
    std::string port;  // tcp
};

parsed_host parse_host(const std::string& host) {
    parsed_host out;
    if (host.starts_with("unix://")) {
        out.path = host.substr(7);
        if (out.path.empty())
            throw error(errc::invalid_argument, "Docker host '" + host + "' names no socket: unix:///path/to/docker.sock");
        return out;
    }
    if (host.starts_with("tcp://")) {
        out.is_unix = false;
        std::string rest = host.substr(6);
        if (const auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
        std::string::size_type colon;
        if (rest.starts_with("[")) {  // [::1]:2375
            const auto close = rest.find(']');
            if (close == std::string::npos)
                throw error(errc::invalid_argument, "Docker host '" + host + "' has an unclosed '['");
            out.name = rest.substr(1, close - 1);
            colon = rest.find(':', close);
        } else {
            colon = rest.rfind(':');
            out.name = rest.substr(0, colon);
        }
        out.port = colon == std::string::npos ? "2375" : rest.substr(colon + 1);
        if (out.name.empty() || out.port.empty())
            throw error(errc::invalid_argument, "Docker host '" + host + "' is not tcp://HOST:PORT");
        return out;
    }
    throw error(errc::invalid_argument, "Docker host '" + host +
                                            "' is not supported: kernex speaks to unix:///path/to/docker.sock and "
                                            "tcp://host:port (with TLS: DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH)");
}

// localhost, 127.0.0.0/8, ::1 (and ::ffff:127.x): nobody else can connect there.
bool is_loopback(const std::string& name) {
    if (name == "localhost" || name.ends_with(".localhost")) return true;
    error_code ec;
    const auto address = net::ip::make_address(name, ec);
    if (ec) return false;
    if (address.is_v6() && address.to_v6().is_v4_mapped())
        return net::ip::make_address_v4(net::ip::v4_mapped, address.to_v6()).is_loopback();
    return address.is_loopback();
}

// The TLS files to use, as the docker CLI finds them; nullopt: no TLS.
std::optional<tls_detail::client_settings> tls_settings(const docker_tls_options& t, const parsed_host& where,
                                                        const std::string& host) {
    const bool given = !t.ca.empty() || !t.cert.empty() || !t.key.empty();
    if (t.verify == false && given)
        throw error(errc::invalid_argument, "TLS files are given for the Docker daemon at " + host +
                                                " but tls_verify is off: kernex has no TLS without verification");
    const char* env = std::getenv("DOCKER_TLS_VERIFY");
    const bool on = t.verify.value_or(given || (env && *env));
    if (!on) return std::nullopt;
    if (where.is_unix) {
        // DOCKER_TLS_VERIFY alone does not apply to a unix socket (nor does it for the docker CLI).
        if (t.verify || given)
            throw error(errc::invalid_argument, "TLS is for a daemon on tcp://HOST:2376; " + host +
                                                    " is a unix socket, which needs none");
        return std::nullopt;
    }
    fs::path dir;
    if (const char* p = std::getenv("DOCKER_CERT_PATH"); p && *p) {
        dir = p;
    } else if (const char* home = std::getenv("HOME"); home && *home) {
        dir = fs::path(home) / ".docker";
    } else if (t.ca.empty() || t.cert.empty() || t.key.empty()) {
        throw error(errc::invalid_argument,
                    "TLS to the Docker daemon needs its certificates: set DOCKER_CERT_PATH (or HOME) or tls_ca, "
                    "tls_cert and tls_key");
    }
    tls_detail::client_settings s{.ca_file = t.ca.empty() ? dir / "ca.pem" : t.ca,
                                  .cert_file = t.cert.empty() ? dir / "cert.pem" : t.cert,
                                  .key_file = t.key.empty() ? dir / "key.pem" : t.key,
                                  .verify = true,
                                  .code = errc::docker_error};
    std::error_code ec;
    if (t.cert.empty() && t.key.empty() && !fs::exists(s.cert_file, ec) && !fs::exists(s.key_file, ec)) {
        s.cert_file.clear();
        s.key_file.clear();
    }
    return s;
}

std::string seconds_text(std::chrono::milliseconds ms) {
    const auto tenths = (ms.count() + 50) / 100;
    return std::to_string(tenths / 10) + (tenths % 10 ? "." + std::to_string(tenths % 10) : "") + " s";
}

std::pair<int, int> version_numbers(std::string_view version) {
    int major = 0, minor = 0;
    const auto dot = version.find('.');
    if (dot == std::string_view::npos) return {0, 0};
    std::from_chars(version.data(), version.data() + dot, major);
    std::from_chars(version.data() + dot + 1, version.data() + version.size(), minor);
    return {major, minor};
}

// Beast 1.74 has its own string_view.
beast::string_view to_beast(std::string_view s) { return {s.data(), s.size()}; }
std::string_view to_std(beast::string_view s) { return {s.data(), s.size()}; }

// Runs at_exit when it goes out of scope, exceptions included.
template <typename F>
struct scope_exit {
    F at_exit;
    ~scope_exit() { at_exit(); }
};
template <typename F>
scope_exit(F) -> scope_exit<F>;

}  // namespace

std::string default_docker_host() {
    const char* env = std::getenv("DOCKER_HOST");
    return env && *env ? env : "unix:///var/run/docker.sock";
}

struct docker_client::impl {
    docker_client_options options;
    parsed_host where;
    std::string version;  // empty until asked
    std::string warning;
    std::shared_ptr<net::ssl::context> tls;  // null: no TLS
    tls_detail::client_settings tls_files;
    net::io_context ioc{1};

    // The same daemon, settings and TLS context, with an io_context of its
    // own: for a connection that outlives one request (an attached stream),
    // whose pending read must not be run, nor waited for, by other requests.
    impl(const impl& other)
        : options(other.options), where(other.where), version(other.version), warning(other.warning),
          tls(other.tls), tls_files(other.tls_files) {}

    explicit impl(docker_client_options o) : options(std::move(o)) {
        if (options.host.empty()) options.host = default_docker_host();
        where = parse_host(options.host);
        if (auto settings = tls_settings(options.tls, where, options.host)) {
            tls_files = *settings;
            tls = tls_detail::make_client_context(tls_files);
            options.tls.verify = true;
            options.tls.ca = tls_files.ca_file.value_or(std::filesystem::path{});
            options.tls.cert = tls_files.cert_file;
            options.tls.key = tls_files.key_file;
        } else if (!where.is_unix && !is_loopback(where.name)) {
            warning = "the Docker daemon at " + options.host +
                      " is reached over plain tcp, without TLS: anyone on the network can take over the daemon "
                      "(and so the machine it runs on). Use TLS with client certificates (DOCKER_TLS_VERIFY=1, "
                      "DOCKER_CERT_PATH, port 2376) or an ssh tunnel to its unix socket";
            static std::mutex lock;
            static std::set<std::string> warned;
            const std::lock_guard guard(lock);
            if (warned.insert(options.host).second) std::cerr << "kernex: warning: " << warning << "\n";
        }
        if (!tls) options.tls = docker_tls_options{.verify = false, .ca = {}, .cert = {}, .key = {}};  // resolved: no TLS
    }

    // Runs handlers until done, or until the deadline: then closes c so its
    // pending operations end, lets their handlers run, and returns false.
    bool run_until(const bool& done, steady::time_point deadline, connection& c) {
        ioc.restart();
        while (!done && steady::now() < deadline) {
            ioc.run_one_until(deadline);
            if (ioc.stopped()) ioc.restart();
        }
        if (done) return true;
        close_connection(c);
        ioc.restart();
        ioc.run();
        return false;
    }

    // One asynchronous operation, waited for until the deadline.
    template <typename Start>
    error_code step(connection& s, steady::time_point deadline, Start&& start) {
        bool done = false;
        error_code result;
        start([&done, &result](error_code ec, auto&&...) {
            result = ec;
            done = true;
        });
        if (!run_until(done, deadline, s)) return net::error::timed_out;
        return result;
    }

    [[noreturn]] void unreachable(const error_code& ec) const {
        std::string advice;
        if (ec == net::error::access_denied)
            advice = "your user may not use its socket: add it to the docker group (sudo usermod -aG docker $USER, "
                     "then log in again), or set DOCKER_HOST to a daemon you may use";
        else
            advice = "start it (sudo systemctl start docker, or run dockerd), or set DOCKER_HOST to the address it "
                     "listens on (unix:///path/to/docker.sock or tcp://host:port)";
        throw error(errc::docker_error,
                    "cannot reach the Docker daemon at " + options.host + " (" + ec.message() + "): " + advice);
    }

    // What TLS used, for messages: which files, and where to change them.
    std::string tls_advice() const {
        std::string used = "kernex used the CA " + tls_files.ca_file.value_or(fs::path()).string();
        if (tls_files.cert_file.empty())
            used += " and no client certificate (no cert.pem or key.pem next to it)";
        else
            used += ", the client certificate " + tls_files.cert_file.string() + " and the key " +
                    tls_files.key_file.string();
        return used + ". Set DOCKER_CERT_PATH (a dir with ca.pem, cert.pem, key.pem), or tls_ca, tls_cert and "
                      "tls_key (--tls-ca, --tls-cert, --tls-key); for a daemon without TLS unset DOCKER_TLS_VERIFY";
    }

    [[noreturn]] void tls_failed(const std::string& why) const {
        throw error(errc::docker_error, "TLS to the Docker daemon at " + options.host + " failed: " + why + ". " +
                                            tls_advice());
    }

    // A daemon with TLS on the port answers plain HTTP with 400 and this text (Go's net/http).
    void refuse_plain_on_tls(const docker_response& r) const {
        if (tls || r.status != 400 || r.body.find("HTTP request to an HTTPS server") == std::string::npos) return;
        throw error(errc::docker_error, "the Docker daemon at " + options.host +
                                            " speaks TLS on this port and kernex spoke plain HTTP to it: set "
                                            "DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (a dir with ca.pem, cert.pem, "
                                            "key.pem), or tls_verify with tls_ca, tls_cert and tls_key (--tls-verify)");
    }

    [[noreturn]] void failed(std::string_view method, std::string_view target, const error_code& ec,
                             steady::time_point started, connection& c) {
        if (auto* t = std::get_if<tls_socket>(&c); t && ec != net::error::timed_out) {
            const std::string why = tls_detail::describe_failure(t->native_handle(), ec, true);
            if (!why.empty()) tls_failed(why + " (during " + std::string(method) + " " + std::string(target) + ")");
            // In TLS 1.3 the daemon judges the client certificate after the
            // client's handshake is done; its alert can be lost to the reset
            // that follows. A TLS 1.2 handshake gets the verdict inside the
            // handshake: it throws the reason if there is one.
            if (ec == net::error::connection_reset || ec == net::error::eof || ec == net::ssl::error::stream_truncated)
                connect(steady::now() + options.timeout, true);
        }
        if (ec == net::error::timed_out)
            throw error(errc::docker_error,
                        "the Docker daemon at " + options.host + " did not answer " + std::string(method) + " " +
                            std::string(target) + " within " +
                            seconds_text(std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started)));
        throw error(errc::docker_error, "the Docker daemon at " + options.host + " broke off " + std::string(method) +
                                            " " + std::string(target) + " (" + ec.message() +
                                            "): was it stopped? Check it with GET /_ping or `docker info`");
    }

    net::generic::stream_protocol::endpoint resolve(steady::time_point deadline) {
        error_code ec;
        unsigned short port = 0;
        if (auto [p, e] = std::from_chars(where.port.data(), where.port.data() + where.port.size(), port);
            e != std::errc() || p != where.port.data() + where.port.size())
            throw error(errc::invalid_argument, "Docker host " + options.host + " has a bad port '" + where.port + "'");
        const auto address = net::ip::make_address(where.name, ec);
        if (!ec) return net::ip::tcp::endpoint(address, port);
        net::ip::tcp::resolver resolver(ioc);
        bool done = false;
        net::ip::tcp::resolver::results_type results;
        resolver.async_resolve(where.name, where.port, [&](const error_code& e, net::ip::tcp::resolver::results_type r) {
            ec = e;
            results = std::move(r);
            done = true;
        });
        ioc.restart();
        while (!done && steady::now() < deadline) ioc.run_one_until(deadline);
        if (!done) {
            resolver.cancel();
            ioc.restart();
            ioc.run();
            throw error(errc::docker_error, "cannot resolve the Docker host " + where.name + " in time");
        }
        if (ec || results.empty())
            throw error(errc::docker_error, "cannot resolve the Docker host " + where.name + " (" +
                                                (ec ? ec.message() : "no address") + "): check DOCKER_HOST");
        return results.begin()->endpoint();
    }

    // A connection to the daemon, TLS handshake done (with tls12, no newer
    // than TLS 1.2: for a diagnosis). Throws as request() does.
    connection connect(steady::time_point deadline, bool tls12 = false) {
        connection c{std::in_place_type<socket_type>, ioc};
        socket_type& s = std::get<socket_type>(c);
        net::generic::stream_protocol::endpoint endpoint;
        if (where.is_unix) {
            if (where.path.size() >= sizeof(sockaddr_un::sun_path))
                throw error(errc::invalid_argument, "the Docker socket path " + where.path +
                                                        " is too long for a unix socket address");
            endpoint = net::local::stream_protocol::endpoint(where.path);
        } else {
            endpoint = resolve(deadline);
        }
        error_code ec = step(c, deadline, [&](auto handler) { s.async_connect(endpoint, std::move(handler)); });
        if (ec == net::error::timed_out)
            throw error(errc::docker_error, "the Docker daemon at " + options.host + " did not accept a connection in time");
        if (ec) unreachable(ec);
        if (!where.is_unix) {
            // A request is a header and a body: Nagle would hold the body back for an ACK.
            const int one = 1;
            ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (!tls) return c;
        const auto started = steady::now();
        connection t{std::in_place_type<tls_socket>, std::move(s), *tls};
        tls_socket& ts = std::get<tls_socket>(t);
        tls_detail::expect_peer(ts.native_handle(), where.name, true, errc::docker_error);
        if (tls12) SSL_set_max_proto_version(ts.native_handle(), TLS1_2_VERSION);
        ec = step(t, deadline,
                  [&](auto handler) { ts.async_handshake(net::ssl::stream_base::client, std::move(handler)); });
        if (ec == net::error::timed_out)
            tls_failed("no TLS handshake within " +
                       seconds_text(std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started)) +
                       ": the daemon may listen without TLS on this port (a plain port, usually 2375, waits for "
                       "HTTP), or be too busy");
        if (ec) {
            const std::string why = tls_detail::describe_failure(ts.native_handle(), ec, true);
            tls_failed(why.empty() ? "the handshake failed (" + ec.message() + ")" : why);
        }
        return t;
    }

    // Runs f on the connection's stream, whichever it is.
    template <typename F>
    static decltype(auto) on_stream(connection& c, F&& f) {
        return std::visit(std::forward<F>(f), c);
    }

    template <typename Body>
    void prepare(http::request<Body>& req, std::string_view content_type) {
        req.set(http::field::host, "docker");
        req.set(http::field::user_agent, "kernex");
        if (!content_type.empty()) req.set(http::field::content_type, to_beast(content_type));
        req.keep_alive(false);
        req.prepare_payload();
    }

    // Sends req and reads the whole response, by the deadline.
    template <typename Body>
    docker_response exchange(http::request<Body>& req, steady::time_point deadline, std::uint64_t body_limit,
                             std::string* api_version_header = nullptr) {
        const auto started = steady::now();
        connection c = connect(deadline);
        error_code ec = step(c, deadline, [&](auto handler) {
            on_stream(c, [&](auto& s) { http::async_write(s, req, std::move(handler)); });
        });
        if (ec) failed(to_std(req.method_string()), to_std(req.target()), ec, started, c);
        beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(body_limit);
        ec = step(c, deadline, [&](auto handler) {
            on_stream(c, [&](auto& s) { http::async_read(s, buffer, parser, std::move(handler)); });
        });
        if (ec) failed(to_std(req.method_string()), to_std(req.target()), ec, started, c);
        docker_response r{parser.get().result_int(), std::move(parser.get().body())};
        refuse_plain_on_tls(r);
        if (api_version_header) *api_version_header = std::string(parser.get()["Api-Version"]);
        return r;
    }

    docker_response raw(std::string_view method, const std::string& target, std::string_view body,
                        std::string_view content_type) {
        const http::verb verb = http::string_to_verb(to_beast(method));
        if (verb == http::verb::unknown)
            throw error(errc::invalid_argument, "unknown HTTP method '" + std::string(method) + "'");
        http::request<http::string_body> req{verb, target, 11};
        req.body() = std::string(body);
        prepare(req, body.empty() && verb != http::verb::post ? std::string_view() : content_type);
        return exchange(req, steady::now() + options.timeout, 64u << 20);
    }

    // The daemon's API version: the Api-Version header of GET /_ping (API
    // 1.25 and later; under a millisecond), else GET /version's ApiVersion
    // (10-17 ms: the daemon asks containerd and runc for theirs).
    std::string daemon_api_version() {
        http::request<http::string_body> ping{http::verb::get, "/_ping", 11};
        prepare(ping, {});
        std::string header;
        const docker_response pinged = exchange(ping, steady::now() + options.timeout, 4096, &header);
        if (pinged.status == 200 && !header.empty()) return header;
        const docker_response r = raw("GET", "/version", {}, {});
        const auto parsed = nlohmann::json::parse(r.body, nullptr, false);
        if (r.status != 200 || !parsed.is_object() || !parsed.contains("ApiVersion") ||
            !parsed["ApiVersion"].is_string())
            throw error(errc::docker_error, "the Docker daemon at " + options.host +
                                                " did not tell its API version (GET /version: " +
                                                std::to_string(r.status) + " " + docker::daemon_message(r) + ")");
        return parsed["ApiVersion"].get<std::string>();
    }

    const std::string& api_version() {
        if (!version.empty()) return version;
        const std::string theirs = daemon_api_version();
        const auto [major, minor] = version_numbers(theirs);
        if (major != our_api_major || minor < min_api_minor)
            throw error(errc::docker_error, "the Docker daemon at " + options.host + " speaks API " + theirs +
                                                "; kernex needs 1." + std::to_string(min_api_minor) +
                                                " or later (Docker 1.13 or later): upgrade it");
        version = minor < our_api_minor ? theirs : std::to_string(our_api_major) + "." + std::to_string(our_api_minor);
        return version;
    }

    std::string versioned(std::string_view path) { return "/v" + api_version() + std::string(path); }

    // POST path with body, asking for the connection to carry a raw stream
    // after the response's header (the daemon answers 101, or 200 on old
    // versions). Returns the connection, with what was read past the header in
    // buffer. Throws as request() does, and refused() for another status.
    connection upgrade(const std::string& path, std::string_view body, beast::flat_buffer& buffer) {
        http::request<http::string_body> req{http::verb::post, versioned(path), 11};
        req.body() = std::string(body);
        prepare(req, "application/json");
        req.set(http::field::connection, "Upgrade");
        req.set(http::field::upgrade, "tcp");
        const auto started = steady::now();
        const auto header_deadline = started + options.timeout;
        connection c = connect(header_deadline);
        error_code ec = step(c, header_deadline, [&](auto handler) {
            on_stream(c, [&](auto& s) { http::async_write(s, req, std::move(handler)); });
        });
        if (ec) failed("POST", path, ec, started, c);
        http::response_parser<http::string_body> parser;
        parser.body_limit(1u << 20);
        ec = step(c, header_deadline, [&](auto handler) {
            on_stream(c, [&](auto& s) { http::async_read_header(s, buffer, parser, std::move(handler)); });
        });
        if (ec) failed("POST", path, ec, started, c);
        const unsigned status = parser.get().result_int();
        if (status != 101 && status != 200) {
            if (!parser.is_done())
                ec = step(c, header_deadline, [&](auto handler) {
                    on_stream(c, [&](auto& s) { http::async_read(s, buffer, parser, std::move(handler)); });
                });
            const docker_response r{status, parser.get().body()};
            refuse_plain_on_tls(r);
            refused("POST", path, r);
        }
        return c;
    }

    [[noreturn]] void refused(std::string_view method, std::string_view path, const docker_response& r) const {
        throw error(r.status == 404 ? errc::not_found : errc::docker_error,
                    "the Docker daemon at " + options.host + " refused " + std::string(method) + " " +
                        std::string(path) + " (" + std::to_string(r.status) + "): " + docker::daemon_message(r));
    }
};

docker_client::docker_client(docker_client_options options) : m_impl(std::make_unique<impl>(std::move(options))) {}
docker_client::~docker_client() = default;
docker_client::docker_client(docker_client&& other) noexcept = default;
docker_client& docker_client::operator=(docker_client&& other) noexcept = default;

const std::string& docker_client::host() const noexcept { return m_impl->options.host; }
const docker_client_options& docker_client::options() const noexcept { return m_impl->options; }
bool docker_client::uses_tls() const noexcept { return m_impl->tls != nullptr; }
const std::string& docker_client::warning() const noexcept { return m_impl->warning; }

const std::string& docker_client::api_version() { return m_impl->api_version(); }

docker_response docker_client::request(std::string_view method, std::string_view path, std::string_view body,
                                       std::string_view content_type) {
    return m_impl->raw(method, m_impl->versioned(path), body, content_type);
}

nlohmann::json docker_client::call(std::string_view method, std::string_view path, const nlohmann::json& body) {
    const docker_response r = request(method, path, body.is_null() ? std::string() : body.dump());
    if (r.status < 200 || r.status > 299) m_impl->refused(method, path, r);
    if (r.body.empty()) return nullptr;
    auto parsed = nlohmann::json::parse(r.body, nullptr, false);
    if (parsed.is_discarded())
        throw error(errc::docker_error, "the Docker daemon at " + host() + " answered " + std::string(method) + " " +
                                            std::string(path) + " with something that is not JSON");
    return parsed;
}

bool docker_client::ping(std::chrono::milliseconds timeout) noexcept {
    try {
        http::request<http::string_body> req{http::verb::get, "/_ping", 11};
        m_impl->prepare(req, {});
        const docker_response r = m_impl->exchange(req, steady::now() + timeout, 4096);
        return r.status == 200;
    } catch (...) {
        return false;
    }
}

void docker_client::import_image(const std::filesystem::path& tar, std::string_view repository, std::string_view tag,
                                 std::chrono::milliseconds timeout) {
    http::request<http::file_body> req{http::verb::post,
                                       m_impl->versioned("/images/create?fromSrc=-&repo=" + std::string(repository) +
                                                         "&tag=" + std::string(tag)),
                                       11};
    beast::error_code ec;
    req.body().open(tar.c_str(), beast::file_mode::scan, ec);
    if (ec) throw error(errc::not_found, "cannot read the image tarball " + tar.string() + ": " + ec.message());
    m_impl->prepare(req, "application/x-tar");
    const docker_response r = m_impl->exchange(req, steady::now() + timeout, 16u << 20);
    if (r.status != 200) m_impl->refused("POST", "/images/create", r);
    // A stream of JSON progress messages; a failure is one of them, with status 200.
    std::size_t start = 0;
    while (start < r.body.size()) {
        auto end = r.body.find('\n', start);
        if (end == std::string::npos) end = r.body.size();
        const auto message = nlohmann::json::parse(r.body.substr(start, end - start), nullptr, false);
        if (message.is_object() && message.contains("error"))
            throw error(errc::docker_error, "the Docker daemon at " + host() + " could not import " + tar.string() +
                                                ": " + message["error"].dump());
        start = end + 1;
    }
}

void docker_client::put_archive(std::string_view container, std::string_view path, std::string_view tar) {
    const std::string target = "/containers/" + std::string(container) + "/archive?path=" + std::string(path);
    const docker_response r = request("PUT", target, tar, "application/x-tar");
    if (r.status != 200) m_impl->refused("PUT", target, r);
}

std::string docker_client::get_archive(std::string_view container, std::string_view path, std::uint64_t max_bytes) {
    const std::string target = "/containers/" + std::string(container) + "/archive?path=" + std::string(path);
    http::request<http::string_body> req{http::verb::get, m_impl->versioned(target), 11};
    m_impl->prepare(req, {});
    docker_response r;
    try {
        r = m_impl->exchange(req, steady::now() + m_impl->options.timeout, max_bytes + 4096);
    } catch (const error& e) {
        if (std::string_view(e.what()).find("body limit") == std::string_view::npos) throw;
        throw error(errc::docker_error, "the files under " + std::string(path) + " in container " +
                                            std::string(container).substr(0, 12) + " are more than " +
                                            std::to_string(max_bytes) + " bytes as a tar: not copied back");
    }
    if (r.status != 200) m_impl->refused("GET", target, r);
    return std::move(r.body);
}

// The attached stream: its own client (so its own io_context), the
// connection, and at most one read pending at a time, whose bytes wait in
// inbox for the next read(). The same code for plain and TLS connections.
struct docker_attached_stream::impl {
    std::unique_ptr<docker_client::impl> client;
    connection c;
    std::string inbox;
    std::array<char, 64 * 1024> chunk{};
    bool reading = false;
    bool ended = false;
    error_code broke;  // set when it ended by an error, not an end of stream

    impl(std::unique_ptr<docker_client::impl> own, connection conn, std::string already)
        : client(std::move(own)), c(std::move(conn)), inbox(std::move(already)) {}
    ~impl() { close(); }

    net::io_context& ioc() { return client->ioc; }

    void start_read() {
        if (reading || ended) return;
        reading = true;
        docker_client::impl::on_stream(c, [this](auto& s) {
            s.async_read_some(net::buffer(chunk), [this](const error_code& e, std::size_t n) {
                reading = false;
                inbox.append(chunk.data(), n);
                if (e) {
                    ended = true;
                    // A TLS peer that closes without close_notify has ended the stream all the same.
                    if (e != net::error::eof && e != net::ssl::error::stream_truncated) broke = e;
                }
            });
        });
    }

    // Runs what is ready without waiting (a read that completed).
    void poll() {
        ioc().restart();
        ioc().poll();
    }

    void close() noexcept {
        try {
            if (!ended) broke = net::error::operation_aborted;
            ended = true;
            close_connection(c);
            // The pending read ends (aborted): its handler runs before anything it touches goes.
            ioc().restart();
            ioc().run();
        } catch (...) {
        }
    }
};

docker_attached_stream::docker_attached_stream(std::unique_ptr<impl> i) : m_impl(std::move(i)) {}
docker_attached_stream::~docker_attached_stream() = default;

docker_attached_stream::wait docker_attached_stream::read(std::string& into, steady::time_point deadline,
                                                          int cancel_fd) {
    impl& d = *m_impl;
    auto handed_on = [&] {
        if (d.inbox.empty()) return false;
        into.append(d.inbox);
        d.inbox.clear();
        return true;
    };
    if (handed_on()) return wait::data;
    if (d.ended) return d.broke ? wait::failed : wait::ended;
    d.start_read();
    auto cancelled = std::make_shared<bool>(false);
    std::optional<net::posix::stream_descriptor> cancel;
    if (cancel_fd >= 0) {
        cancel.emplace(d.ioc(), cancel_fd);
        cancel->async_wait(net::posix::descriptor_base::wait_read, [cancelled](const error_code& e) {
            if (!e) *cancelled = true;
        });
    }
    d.ioc().restart();
    while (d.inbox.empty() && !d.ended && !*cancelled && steady::now() < deadline) {
        d.ioc().run_one_until(deadline);
        if (d.ioc().stopped()) d.ioc().restart();
    }
    if (cancel) {
        error_code ignored;
        cancel->cancel(ignored);
        d.poll();  // the wait's handler, aborted
        cancel->release();
    }
    if (handed_on()) return wait::data;
    if (*cancelled) return wait::cancelled;
    if (d.ended) return d.broke ? wait::failed : wait::ended;
    return wait::timed_out;
}

bool docker_attached_stream::write(std::string_view data, steady::time_point deadline) {
    impl& d = *m_impl;
    if (d.ended) return false;
    bool done = false;
    error_code result;
    docker_client::impl::on_stream(d.c, [&](auto& s) {
        net::async_write(s, net::buffer(data.data(), data.size()), [&](const error_code& e, std::size_t) {
            result = e;
            done = true;
        });
    });
    d.ioc().restart();
    while (!done && steady::now() < deadline) {
        d.ioc().run_one_until(deadline);
        if (d.ioc().stopped()) d.ioc().restart();
    }
    if (done && !result) return true;
    // Not written in time, or broken: the stream is no use any more (close() runs the write's handler).
    d.close();
    return false;
}

bool docker_attached_stream::stirred() {
    impl& d = *m_impl;
    if (!d.ended) {
        d.start_read();
        d.poll();
    }
    return !d.inbox.empty() || d.ended;
}

std::unique_ptr<docker_attached_stream> docker_client::attach(std::string_view container) {
    m_impl->api_version();  // asked once, on the client's own connection
    auto own = std::make_unique<impl>(*m_impl);
    beast::flat_buffer buffer;
    const std::string path = "/containers/" + std::string(container) + "/attach?stream=1&stdin=1&stdout=1&stderr=1";
    connection c = own->upgrade(path, {}, buffer);
    std::string already;
    if (buffer.size() > 0) {
        const auto data = buffer.data();
        already.assign(static_cast<const char*>(data.data()), data.size());
    }
    return std::unique_ptr<docker_attached_stream>(new docker_attached_stream(
        std::make_unique<docker_attached_stream::impl>(std::move(own), std::move(c), std::move(already))));
}

std::string docker_client::create_exec(std::string_view container, const docker_exec_options& options) {
    nlohmann::json body = {{"AttachStdin", false}, {"AttachStdout", true}, {"AttachStderr", true},
                           {"Tty", false},         {"Cmd", options.cmd}};
    if (!options.env.empty()) body["Env"] = options.env;
    if (!options.working_dir.empty()) body["WorkingDir"] = options.working_dir;
    if (!options.user.empty()) body["User"] = options.user;
    const auto reply = call("POST", "/containers/" + std::string(container) + "/exec", body);
    if (!reply.is_object() || !reply.contains("Id") || !reply["Id"].is_string())
        throw error(errc::docker_error, "the Docker daemon at " + host() + " created an exec without telling its id");
    return reply["Id"].get<std::string>();
}

docker_stream_end docker_client::start_exec(std::string_view exec_id, const docker_stream_options& options) {
    impl& d = *m_impl;
    const std::string path = "/exec/" + std::string(exec_id) + "/start";
    const auto started = steady::now();
    beast::flat_buffer buffer;
    connection c = d.upgrade(path, R"({"Detach":false,"Tty":false})", buffer);

    docker::exec_stream_demuxer demuxer;
    const docker::exec_stream_demuxer::sink& out = options.on_output;
    if (buffer.size() > 0) {
        const auto data = buffer.data();
        demuxer.feed({static_cast<const char*>(data.data()), data.size()}, out);
        buffer.consume(buffer.size());
    }

    bool finished = false;
    bool cancelled = false;
    error_code read_error;
    std::array<char, 64 * 1024> chunk;
    std::optional<net::posix::stream_descriptor> cancel;
    // Declared after everything the handlers touch, so it runs first: no
    // handler is left pending when they go, even when one threw.
    scope_exit cleanup{[&] {
        error_code ignored;
        close_connection(c);
        if (cancel) cancel->cancel(ignored);
        d.ioc.restart();
        d.ioc.run();
        if (cancel) cancel->release();
    }};
    if (options.cancel_fd >= 0) {
        cancel.emplace(d.ioc, options.cancel_fd);
        cancel->async_wait(net::posix::descriptor_base::wait_read, [&](const error_code& e) {
            if (!e) cancelled = true;
        });
    }
    std::function<void()> read_more = [&] {
        impl::on_stream(c, [&](auto& s) {
            s.async_read_some(net::buffer(chunk), [&](const error_code& e, std::size_t n) {
                if (n > 0) demuxer.feed({chunk.data(), n}, out);
                if (e) {
                    // A TLS peer that closes without close_notify: the framing check below still holds.
                    if (e != net::error::eof && e != net::ssl::error::stream_truncated) read_error = e;
                    finished = true;
                } else if (!cancelled) {
                    read_more();
                }
            });
        });
    };
    read_more();
    d.ioc.restart();
    while (!finished && !cancelled && steady::now() < options.deadline) {
        d.ioc.run_one_until(options.deadline);
        if (d.ioc.stopped()) d.ioc.restart();
    }
    if (finished) {
        if (read_error)
            d.failed("POST", path, read_error, started, c);
        if (!demuxer.at_frame_boundary())
            throw error(errc::docker_error, "the Docker daemon at " + host() +
                                                " ended an exec stream in the middle of a frame: was it stopped?");
        return docker_stream_end::finished;
    }
    return cancelled ? docker_stream_end::interrupted : docker_stream_end::timed_out;
}

std::optional<int> docker_client::exec_exit_code(std::string_view exec_id) {
    const auto reply = call("GET", "/exec/" + std::string(exec_id) + "/json");
    if (!reply.is_object()) throw error(errc::docker_error, "the Docker daemon at " + host() + " sent a bad exec inspect");
    if (reply.value("Running", false)) return std::nullopt;
    const auto code = reply.find("ExitCode");
    if (code == reply.end() || !code->is_number_integer()) return -1;
    return code->get<int>();
}

}  // namespace kernex
