// Per-call overhead of `kernex mcp`: run_code through MCP (stdio, JSON-RPC,
// a fresh executor per call) against make_executor's local executor called
// directly (also fresh per call), and run_cell through MCP against
// kernel_client::execute on a kernel of our own, side by side in one run:
// each pair interleaved, the two taking turns at going first, so that load
// on the machine and what the previous call left behind hit both alike.
//
//   bench_mcp [N=200] [path/to/kernex]   (default: $KERNEX_BUILD_DIR/src/cli/kernex, else src/cli/kernex)
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_stats.hpp"
#include "kernex/executor.hpp"
#include "kernex/kernel_manager.hpp"

namespace {

using bench_clock = std::chrono::steady_clock;
using json = nlohmann::json;

// kernex mcp on two pipes, one request at a time.
class mcp_server {
public:
    explicit mcp_server(const std::string& kernex) {
        int in[2], out[2];
        if (::pipe(in) != 0 || ::pipe(out) != 0) throw std::runtime_error("pipe");
        m_pid = ::fork();
        if (m_pid == 0) {
            ::dup2(in[0], 0);
            ::dup2(out[1], 1);
            ::close(in[1]);
            ::close(out[0]);
            ::execl(kernex.c_str(), kernex.c_str(), "mcp", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(in[0]);
        ::close(out[1]);
        m_to = in[1];
        m_from = out[0];
        call("initialize", {{"protocolVersion", "2025-11-25"},
                            {"capabilities", json::object()},
                            {"clientInfo", {{"name", "bench"}, {"version", "1"}}}});
        send({{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}});
    }
    ~mcp_server() {
        ::close(m_to);  // EOF: the server shuts its kernels down and exits
        int status = 0;
        ::waitpid(m_pid, &status, 0);
        ::close(m_from);
    }
    json call(const std::string& method, json params) {
        send({{"jsonrpc", "2.0"}, {"id", ++m_id}, {"method", method}, {"params", std::move(params)}});
        for (;;) {
            json reply = json::parse(read_line());
            if (reply.value("id", json()) == m_id) {
                if (reply.contains("error")) throw std::runtime_error(reply["error"].dump());
                return reply["result"];
            }
        }
    }

private:
    void send(const json& msg) {
        const std::string line = msg.dump() + "\n";
        if (::write(m_to, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
            throw std::runtime_error("write to kernex mcp");
    }
    std::string read_line() {
        for (;;) {
            const auto nl = m_buffer.find('\n');
            if (nl != std::string::npos) {
                std::string line = m_buffer.substr(0, nl);
                m_buffer.erase(0, nl + 1);
                return line;
            }
            char buf[65536];
            const ssize_t n = ::read(m_from, buf, sizeof buf);
            if (n <= 0) throw std::runtime_error("kernex mcp ended");
            m_buffer.append(buf, static_cast<std::size_t>(n));
        }
    }
    pid_t m_pid = -1;
    int m_to = -1;
    int m_from = -1;
    int m_id = 0;
    std::string m_buffer;
};

using kernex::bench::method;

}  // namespace

int main(int argc, char** argv) {
    const int n = argc > 1 ? std::atoi(argv[1]) : 200;
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    const std::string kernex = argc > 2 ? argv[2] : build ? std::string(build) + "/src/cli/kernex" : "src/cli/kernex";

    mcp_server server(kernex);
    server.call("tools/call", {{"name", "run_cell"}, {"arguments", {{"code", "pass"}}}});  // starts the session
    auto km = kernex::kernel_manager::start({.kernel_name = "python3"});
    kernex::kernel_client& kc = km.client();
    const json local = {{"executor", "local"}};

    std::vector<method> methods = {
        {"run_code via MCP (bash true)",
         [&] {
             auto r = server.call("tools/call", {{"name", "run_code"}, {"arguments", {{"code", "true"}, {"language", "bash"}}}});
             if (r.value("isError", true)) throw std::runtime_error("run_code failed: " + r.dump());
         }, {}},
        {"make_executor + execute (bash true)",
         [&] {
             auto ex = kernex::make_executor(local);
             if (ex->execute({{"bash", "true"}}).exit_code != 0) throw std::runtime_error("execute failed");
             ex->stop();
         }, {}},
        {"run_cell via MCP (pass)",
         [&] {
             auto r = server.call("tools/call", {{"name", "run_cell"}, {"arguments", {{"code", "pass"}}}});
             if (r.value("isError", true)) throw std::runtime_error("run_cell failed: " + r.dump());
         }, {}},
        {"kernel_client::execute (pass)",
         [&] {
             if (kc.execute("pass").status != kernex::execution_status::ok) throw std::runtime_error("execute failed");
         }, {}},
    };
    for (int i = 0; i < 5; ++i)
        for (auto& m : methods) m.run_once();  // warm up
    // Each pair (MCP, direct) in a phase of its own, its two methods taking
    // turns at going first: what a call leaves behind (a block's process
    // exiting and being reaped, its temporary dir removed) then weighs on
    // both alike. In one fixed order each method always came after the same
    // other one: run_cell via MCP, measured after make_executor, seemed
    // 2.7 ms slower than kernel_client::execute, and 2 ms faster in a run
    // with the order turned.
    const auto measure = [](method& m) {
        const auto t0 = bench_clock::now();
        m.run_once();
        m.micros.push_back(std::chrono::duration<double, std::micro>(bench_clock::now() - t0).count());
    };
    for (std::size_t first = 0; first < methods.size(); first += 2)
        for (int i = 0; i < n; ++i) {
            measure(methods[first + (i % 2)]);
            measure(methods[first + 1 - (i % 2)]);
        }

    std::printf("kernex mcp per-call overhead, %d calls each, pairs interleaved, alternating first (microseconds)\n\n", n);
    std::printf("| %-38s | %9s | %9s | %9s |\n", "method", "median", "p90", "mean");
    std::printf("|%s|%s|%s|%s|\n", std::string(40, '-').c_str(), std::string(11, '-').c_str(),
                std::string(11, '-').c_str(), std::string(11, '-').c_str());
    for (const auto& m : methods)
        std::printf("| %-38s | %9.0f | %9.0f | %9.0f |\n", m.name.c_str(), kernex::bench::percentile(m.micros, 0.5),
                    kernex::bench::percentile(m.micros, 0.9), kernex::bench::mean(m.micros));
    const auto med = [&](int i) { return kernex::bench::percentile(methods[i].micros, 0.5); };
    // The same, from each round's two calls (made one after the other):
    // slower swings of the machine's load cancel out.
    const auto paired = [&](int i) {
        std::vector<double> d;
        for (std::size_t k = 0; k < methods[i].micros.size(); ++k)
            d.push_back(methods[i].micros[k] - methods[i + 1].micros[k]);
        return kernex::bench::percentile(d, 0.5);
    };
    std::printf("\nMCP overhead, median difference: run_code %+.0f us, run_cell %+.0f us\n", med(0) - med(1),
                med(2) - med(3));
    std::printf("MCP overhead, median of the rounds' differences: run_code %+.0f us, run_cell %+.0f us\n", paired(0),
                paired(2));
    return 0;
}
