// A real Jupyter Server (Debian's python3-jupyter-server) for the gateway
// tests and benchmark: started on 127.0.0.1 with a free port and a random
// token, its runtime, data, config and home dirs in a temporary directory,
// waited for (GET /api/status), and stopped by pid (SIGTERM, then SIGKILL)
// when the object goes. The server gets SIGTERM if this process dies first
// (PR_SET_PDEATHSIG, kept across exec), so a crashed test leaves no server;
// the server then shuts its kernels down.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "kernex/gateway.hpp"
#include "kernex/message.hpp"
#include "kernex/process.hpp"

namespace kernex::test {

// A TCP port on 127.0.0.1 that was free a moment ago.
inline int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("cannot find a free port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

struct jupyter_server_options {
    // https with this certificate and key (PEM).
    std::filesystem::path certfile{};
    std::filesystem::path keyfile{};
    // The server's JUPYTER_PATH (where it finds kernelspecs besides /usr/share/jupyter).
    std::string jupyter_path{};
};

class jupyter_server {
public:
    explicit jupyter_server(jupyter_server_options options = {}) {
        std::string pattern = (std::filesystem::temp_directory_path() / "kernex-gw-XXXXXX").string();
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
        m_dir = pattern;
        for (const char* d : {"root", "runtime", "data", "config", "home", "ipython", "mpl", "cache"})
            std::filesystem::create_directories(m_dir / d);
        m_token = new_id();
        m_tls = !options.certfile.empty();
        std::string last_error;
        for (int attempt = 0; attempt < 3; ++attempt) {
            m_port = free_port();
            try {
                launch(options);
                return;
            } catch (const std::exception& e) {
                last_error = e.what();
                m_proc.stop(std::chrono::milliseconds(500));
            }
        }
        cleanup();
        throw std::runtime_error("the Jupyter Server did not start (is python3-jupyter-server installed?): " +
                                 last_error);
    }

    ~jupyter_server() {
        stop();
        cleanup();
    }
    jupyter_server(const jupyter_server&) = delete;
    jupyter_server& operator=(const jupyter_server&) = delete;

    std::string url() const { return std::string(m_tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(m_port); }
    const std::string& token() const { return m_token; }
    int port() const { return m_port; }
    int pid() const { return m_proc.pid(); }
    const std::filesystem::path& dir() const { return m_dir; }
    std::filesystem::path runtime_dir() const { return m_dir / "runtime"; }

    gateway_options options() const {
        gateway_options o;
        o.url = url();
        o.token = m_token;
        return o;
    }

    // SIGKILL to the server alone (its kernels live in sessions of their own).
    void kill_now() { ::kill(m_proc.pid(), SIGKILL); }

    // SIGTERM (the server shuts its kernels down), then SIGKILL after a few seconds.
    void stop() noexcept { m_proc.stop(std::chrono::milliseconds(8000)); }

    std::string log_tail() const {
        std::ifstream in(m_dir / "server.log");
        std::stringstream s;
        s << in.rdbuf();
        auto text = s.str();
        return text.size() > 3000 ? text.substr(text.size() - 3000) : text;
    }

private:
    void launch(const jupyter_server_options& options) {
        spawn_options so;
        // prctl(PR_SET_PDEATHSIG, SIGTERM) survives the exec into the server.
        // Its parent is kernex's reaper (which also ends it when this test
        // process dies), not this process.
        std::string args = "['-m', 'jupyter_server', '--ServerApp.ip=127.0.0.1', '--ServerApp.port=" +
                           std::to_string(m_port) + "', '--ServerApp.port_retries=0', '--ServerApp.token=" + m_token +
                           "', '--no-browser', '--ServerApp.root_dir=" + (m_dir / "root").string() + "'";
        if (::geteuid() == 0) args += ", '--allow-root'";
        if (m_tls)
            args += ", '--ServerApp.certfile=" + options.certfile.string() + "', '--ServerApp.keyfile=" +
                    options.keyfile.string() + "'";
        args += "]";
        so.argv = {"/usr/bin/python3", "-c",
                   "import ctypes, os, signal, sys\n"
                   "ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"
                   "os.execv(sys.executable, [sys.executable] + " + args + ")\n"};
        so.env = {{"JUPYTER_RUNTIME_DIR", (m_dir / "runtime").string()},
                  {"JUPYTER_DATA_DIR", (m_dir / "data").string()},
                  {"JUPYTER_CONFIG_DIR", (m_dir / "config").string()},
                  {"JUPYTER_PATH", options.jupyter_path},
                  {"HOME", (m_dir / "home").string()},
                  {"XDG_CACHE_HOME", (m_dir / "cache").string()},
                  {"XDG_DATA_HOME", (m_dir / "data").string()},
                  {"XDG_CONFIG_HOME", (m_dir / "config").string()},
                  {"IPYTHONDIR", (m_dir / "ipython").string()},
                  {"MPLCONFIGDIR", (m_dir / "mpl").string()},
                  {"MPLBACKEND", "Agg"},
                  {"PYDEVD_DISABLE_FILE_VALIDATION", "1"}};
        so.stdout_mode = output_mode::file;
        so.stderr_mode = output_mode::file;
        so.log_file = m_dir / "server.log";
        m_proc = child_process(so);
        auto o = options_for_wait();
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
        for (;;) {
            try {
                gateway_client(o).status();
                return;
            } catch (const std::exception&) {
            }
            if (!m_proc.running())
                throw std::runtime_error("it exited: " + log_tail());
            if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("not up in 40 s: " + log_tail());
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    }

    gateway_options options_for_wait() const {
        auto o = options();
        o.request_timeout = std::chrono::milliseconds(2000);
        o.verify_tls = false;
        return o;
    }

    void cleanup() noexcept {
        std::error_code ec;
        std::filesystem::remove_all(m_dir, ec);
    }

    std::filesystem::path m_dir;
    std::string m_token;
    bool m_tls = false;
    int m_port = 0;
    child_process m_proc;
};

}  // namespace kernex::test
