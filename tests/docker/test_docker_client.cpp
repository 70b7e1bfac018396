// docker_client against a daemon of the test's own making (a few lines of
// HTTP on a unix socket): how it learns the daemon's API version (suite
// unit: no Docker).
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../helpers/test_support.hpp"
#include "kernex/docker_client.hpp"
#include "kernex/error.hpp"

namespace {

// Answers each request by its target from `answers` (a whole HTTP response;
// 404 for any other) and keeps the request lines, in order.
class fake_daemon {
public:
    explicit fake_daemon(std::map<std::string, std::string> answers) : m_answers(std::move(answers)) {
        m_path = (m_dir.path() / "docker.sock").string();
        m_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        m_path.copy(address.sun_path, sizeof address.sun_path - 1);
        REQUIRE(::bind(m_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(::listen(m_fd, 8) == 0);
        m_thread = std::thread([this] { serve(); });
    }
    ~fake_daemon() {
        ::shutdown(m_fd, SHUT_RDWR);
        m_thread.join();
        ::close(m_fd);
    }
    std::string host() const { return "unix://" + m_path; }
    std::vector<std::string> requests() {
        std::lock_guard lock(m_mutex);
        return m_requests;
    }

private:
    void serve() {
        for (;;) {
            const int c = ::accept4(m_fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) return;
            std::string request;
            char buffer[4096];
            while (request.find("\r\n\r\n") == std::string::npos) {
                const ssize_t n = ::read(c, buffer, sizeof buffer);
                if (n <= 0) break;
                request.append(buffer, static_cast<std::size_t>(n));
            }
            const std::string line = request.substr(0, request.find("\r\n"));
            {
                std::lock_guard lock(m_mutex);
                m_requests.push_back(line);
            }
            const auto target = line.substr(line.find(' ') + 1, line.rfind(' ') - line.find(' ') - 1);
            const auto it = m_answers.find(target);
            const std::string answer = it != m_answers.end()
                                           ? it->second
                                           : "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            [[maybe_unused]] auto written = ::write(c, answer.data(), answer.size());
            ::close(c);
        }
    }

    kernex::test::temp_dir m_dir;
    std::string m_path;
    int m_fd = -1;
    std::map<std::string, std::string> m_answers;
    std::mutex m_mutex;
    std::vector<std::string> m_requests;
    std::thread m_thread;
};

std::string response(const std::string& extra_headers, const std::string& body) {
    return "HTTP/1.1 200 OK\r\n" + extra_headers + "Content-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + body;
}

}  // namespace

TEST_CASE("the API version comes from /_ping's Api-Version header, without asking /version") {
    fake_daemon daemon({{"/_ping", response("Api-Version: 1.40\r\n", "OK")},
                        {"/version", response("", R"({"ApiVersion": "1.39"})")}});
    kernex::docker_client client({.host = daemon.host()});
    CHECK(client.api_version() == "1.40");  // older than ours: the daemon's
    CHECK(client.api_version() == "1.40");  // asked once
    CHECK(daemon.requests() == std::vector<std::string>{"GET /_ping HTTP/1.1"});
}

TEST_CASE("a daemon newer than kernex is spoken to in kernex's version") {
    fake_daemon daemon({{"/_ping", response("Api-Version: 1.47\r\n", "OK")}});
    kernex::docker_client client({.host = daemon.host()});
    CHECK(client.api_version() == "1.41");
}

TEST_CASE("a /_ping without the header: /version says it") {
    fake_daemon daemon({{"/_ping", response("", "OK")}, {"/version", response("", R"({"ApiVersion": "1.30"})")}});
    kernex::docker_client client({.host = daemon.host()});
    CHECK(client.api_version() == "1.30");
    CHECK(daemon.requests() == std::vector<std::string>{"GET /_ping HTTP/1.1", "GET /version HTTP/1.1"});
}

TEST_CASE("a daemon too old, or one that says no version, is a docker_error that says what to do") {
    SUBCASE("too old") {
        fake_daemon daemon({{"/_ping", response("Api-Version: 1.24\r\n", "OK")}});
        kernex::docker_client client({.host = daemon.host()});
        CHECK_THROWS_WITH(client.api_version(), doctest::Contains("upgrade it"));
    }
    SUBCASE("no version at all") {
        fake_daemon daemon({{"/_ping", response("", "OK")}, {"/version", response("", "{}")}});
        kernex::docker_client client({.host = daemon.host()});
        CHECK_THROWS_WITH(client.api_version(), doctest::Contains("did not tell its API version"));
    }
}
