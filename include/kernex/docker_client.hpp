// docker_client: the Docker Engine API over HTTP/1.1, on a unix socket,
// plain tcp or tcp with TLS and client certificates (DOCKER_HOST's unix://
// and tcp://, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH as the docker CLI reads
// them), with a deadline on every
// request: JSON calls, `docker import` of a tar file, exec with its
// multiplexed stdout/stderr stream read as it arrives, and a container's
// attached stream kept open (on any of the three). It never runs the
// docker CLI. Single-threaded: one client per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kernex {

// TLS to a tcp:// daemon, as the docker CLI's --tlsverify: the daemon's
// certificate must be signed by ca and name the host (an IP address or a
// DNS name), and kernex shows its client certificate. There is no TLS
// without verification (the CLI's --tls alone).
struct docker_tls_options {
    // true: TLS; false: plain tcp even when DOCKER_TLS_VERIFY is set; unset:
    // TLS when DOCKER_TLS_VERIFY is set (not empty) or a file below is given.
    std::optional<bool> verify{};
    // PEM files: the CA that signed the daemon's certificate, the client
    // certificate and its key. Empty: ca.pem, cert.pem, key.pem in
    // $DOCKER_CERT_PATH, else in ~/.docker (cert.pem and key.pem are then
    // left out when neither exists, for a daemon that asks for no client
    // certificate). A file given here must exist.
    std::filesystem::path ca{};
    std::filesystem::path cert{};
    std::filesystem::path key{};
};

struct docker_client_options {
    // unix:///path/to/docker.sock or tcp://host:port. Empty: $DOCKER_HOST,
    // else unix:///var/run/docker.sock.
    std::string host{};
    docker_tls_options tls{};
    // Each request's deadline: connecting, sending and the whole response.
    std::chrono::milliseconds timeout{30'000};
};

struct docker_response {
    unsigned status = 0;  // the HTTP status
    std::string body;
};

// The streams of an attached exec (the first byte of each frame's header).
enum class docker_stream : std::uint8_t {
    standard_input = 0,
    standard_output = 1,
    standard_error = 2,
    system_error = 3,  // the daemon's own error text
};

struct docker_exec_options {
    std::vector<std::string> cmd;  // argv, run without a shell
    std::vector<std::string> env;  // "NAME=value", added to the container's
    std::string working_dir;       // empty: the container's
    std::string user;              // "uid:gid" or a name; empty: the container's
};

struct docker_stream_options {
    // Reading stops here (the command is left running: see docker_executor for killing it).
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
    // Called with each piece of output as it arrives, in order.
    std::function<void(docker_stream, std::string_view)> on_output;
    // When this fd becomes readable, reading stops (a self-pipe for Ctrl-C). -1: none.
    int cancel_fd = -1;
};

enum class docker_stream_end {
    finished,     // the command's streams closed: it exited
    timed_out,    // the deadline came first
    interrupted,  // cancel_fd became readable first
};

class docker_client;

// A container's attached stdin and its multiplexed stdout and stderr (the
// frames of exec_stream: no TTY), on a connection of its own taken over
// from HTTP, plain or TLS. Single-threaded; every wait has a deadline. What
// arrives is as the container made it: the caller demultiplexes and judges it.
class docker_attached_stream {
public:
    ~docker_attached_stream();  // closes the connection: the container's stdin ends
    docker_attached_stream(const docker_attached_stream&) = delete;
    docker_attached_stream& operator=(const docker_attached_stream&) = delete;

    enum class wait {
        data,       // bytes were appended
        cancelled,  // cancel_fd became readable first (nothing is read from it)
        ended,      // the daemon closed the stream
        failed,     // the connection broke (or was closed by a write that failed)
        timed_out,  // the deadline came first
    };
    // Waits until bytes arrive (appended to into), cancel_fd (-1: none)
    // becomes readable, the stream ends or breaks, or the deadline.
    wait read(std::string& into, std::chrono::steady_clock::time_point deadline, int cancel_fd = -1);
    // Writes all of data to the container's stdin by the deadline. False
    // when it could not: the connection is then closed.
    bool write(std::string_view data, std::chrono::steady_clock::time_point deadline);
    // Without waiting: whether bytes have arrived, or the stream has ended,
    // that no read has handed on yet.
    bool stirred();

private:
    friend class docker_client;
    struct impl;
    explicit docker_attached_stream(std::unique_ptr<impl> i);
    std::unique_ptr<impl> m_impl;
};

class docker_client {
public:
    // Does not connect yet. Throws kernex::error: invalid_argument for a host
    // that is not unix:// or tcp://, or TLS asked for a unix socket;
    // not_found for a TLS file that does not exist; docker_error for one that
    // cannot be loaded, a key that does not match its certificate, or a
    // client certificate that has expired.
    // A plain tcp:// host that is not loopback gets a warning (warning()),
    // also written once to stderr.
    explicit docker_client(docker_client_options options = {});
    ~docker_client();
    docker_client(docker_client&& other) noexcept;
    docker_client& operator=(docker_client&& other) noexcept;

    // The daemon's address, as given or from DOCKER_HOST: "unix:///var/run/docker.sock".
    const std::string& host() const noexcept;

    // The options as resolved: the host as above; tls.verify true with the
    // three files found (ca, and cert and key unless the daemon asks for
    // none), or false when requests go without TLS.
    const docker_client_options& options() const noexcept;

    // True when requests go over TLS.
    bool uses_tls() const noexcept;

    // What is unsafe about this daemon's address ("anyone on the network can
    // take over the daemon" for plain tcp to a host that is not loopback);
    // empty when nothing is.
    const std::string& warning() const noexcept;

    // The API version put in front of request paths ("1.41"): the lower of
    // kernex's and the daemon's, asked of the daemon once (GET /version).
    // Throws as request() does, and kernex::error(docker_error) for a daemon
    // older than API 1.25.
    const std::string& api_version();

    // Sends a request for path (what follows the version: "/containers/json?all=1")
    // and returns the response, whatever its status. Throws
    // kernex::error(docker_error) when the daemon cannot be reached (saying how
    // to start it or set DOCKER_HOST) or does not answer in time.
    docker_response request(std::string_view method, std::string_view path, std::string_view body = {},
                            std::string_view content_type = "application/json");

    // request() with a JSON body (none when null); returns the JSON response
    // (null when empty). A status other than 2xx throws kernex::error with the
    // daemon's message: not_found for 404, docker_error otherwise.
    nlohmann::json call(std::string_view method, std::string_view path, const nlohmann::json& body = nullptr);

    // GET /_ping with its own deadline. True when the daemon answers OK; never throws.
    bool ping(std::chrono::milliseconds timeout) noexcept;

    // `docker import`: the tar file (a root filesystem) becomes image
    // repository:tag. Throws kernex::error: not_found when the file cannot be
    // read, docker_error when the daemon refuses it.
    void import_image(const std::filesystem::path& tar, std::string_view repository, std::string_view tag = "latest",
                      std::chrono::milliseconds timeout = std::chrono::minutes(5));

    // PUT /containers/{container}/archive?path=path: the tar stream is
    // unpacked there (path must be in a volume when the root is read-only).
    // Throws kernex::error: not_found for a missing container or path,
    // docker_error when the daemon refuses.
    void put_archive(std::string_view container, std::string_view path, std::string_view tar);

    // GET /containers/{container}/archive?path=path: a tar of path (its own
    // name first). Throws as put_archive, and kernex::error(docker_error)
    // when the tar is larger than max_bytes (saying so).
    std::string get_archive(std::string_view container, std::string_view path, std::uint64_t max_bytes);

    // POST /containers/{container}/attach (stdin, stdout and stderr, as a
    // stream), the connection taken over, over whatever this client speaks
    // (a unix socket, tcp, or TLS): see docker_attached_stream. Throws as
    // request() does, and as refused for another status than 101 or 200.
    std::unique_ptr<docker_attached_stream> attach(std::string_view container);

    // POST /containers/{container}/exec, attached to stdout and stderr. Returns the exec id.
    std::string create_exec(std::string_view container, const docker_exec_options& options);

    // POST /exec/{id}/start, attached: reads the demultiplexed output into
    // on_output until the command's streams close, the deadline or cancel_fd.
    // Throws kernex::error(docker_error) when the daemon refuses or breaks the
    // stream's framing (protocol_error).
    docker_stream_end start_exec(std::string_view exec_id, const docker_stream_options& options);

    // GET /exec/{id}/json: the exit code once the command has ended (-1 when
    // the daemon does not know it), nullopt while it runs.
    std::optional<int> exec_exit_code(std::string_view exec_id);

private:
    friend class docker_attached_stream;
    struct impl;
    std::unique_ptr<impl> m_impl;
};

// The daemon address DOCKER_HOST names, else unix:///var/run/docker.sock.
std::string default_docker_host();

}  // namespace kernex
