// Per-cell round trip through a Jupyter Server's websocket against the same
// kernel over ZeroMQ. The benchmark starts its own Jupyter Server (as the
// gateway tests do), starts a python3 kernel through it, and connects a
// second kernel_client straight to that kernel's ports with the connection
// file the server wrote in its runtime dir. The two clients take turns in
// rounds, so load on the machine falls on both alike; each cell is timed
// from execute() until its reply and iopub idle arrived. Both clients see
// every iopub message (the other's too), as any two clients of one kernel do.
//
//   bench_gateway [KERNEL=python3] [CELLS_PER_ROUND=50] [ROUNDS=10]
// KERNEL python3 (ipykernel) or kernex-test (the native test kernel, whose
// microseconds per cell leave the transports' cost in view: run with
// JUPYTER_PATH=<build>/tests/helpers/share/jupyter, passed on to the server).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "../gateway/jupyter_server.hpp"
#include "bench_stats.hpp"
#include "kernex/kernel_client.hpp"
#include "kernex/remote_kernel.hpp"

namespace {

using steady = std::chrono::steady_clock;

using kernex::bench::mean;
using kernex::bench::percentile;

struct workload {
    std::string name;
    std::string code;
    std::vector<double> ws_ms, zmq_ms;
};

double time_cell(kernex::kernel_client& kc, const std::string& code) {
    auto t0 = steady::now();
    auto r = kc.execute(code);
    if (r.status != kernex::execution_status::ok) {
        std::fprintf(stderr, "cell failed: %s\n", std::string(kernex::to_string(r.status)).c_str());
        std::exit(1);
    }
    return std::chrono::duration<double, std::milli>(steady::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    const std::string kernel = argc > 1 ? argv[1] : "python3";
    const int cells = argc > 2 ? std::atoi(argv[2]) : 50;
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 10;
    if (cells <= 0 || rounds <= 0 || (kernel != "python3" && kernel != "kernex-test")) {
        std::fprintf(stderr, "usage: bench_gateway [python3|kernex-test] [CELLS_PER_ROUND] [ROUNDS]\n");
        return 2;
    }
    kernex::test::jupyter_server_options so;
    if (const char* path = std::getenv("JUPYTER_PATH")) so.jupyter_path = path;
    kernex::test::jupyter_server server(so);
    kernex::remote_kernel_options ko;
    ko.kernel_name = kernel;
    auto rk = kernex::remote_kernel::start(server.options(), ko);
    auto conn = server.runtime_dir() / ("kernel-" + rk.id() + ".json");
    auto zmq = kernex::kernel_client::from_connection_file(conn);
    zmq.wait_for_ready(std::chrono::seconds(30));
    auto& ws = rk.client();

    std::vector<workload> loads;
    if (kernel == "python3")
        loads = {{"`pass`", "pass", {}, {}},
                 {"`1 + 1` (a result)", "1 + 1", {}, {}},
                 {"100 kB of stdout", "print('x' * 100_000)", {}, {}}};
    else
        loads = {{"empty cell", "", {}, {}},
                 {"`result 2`", "result 2", {}, {}},
                 {"100 kB of stdout", "print " + std::string(100'000, 'x'), {}, {}}};
    for (auto& w : loads)
        for (int i = 0; i < 10; ++i) {  // warm-up
            time_cell(ws, w.code);
            time_cell(zmq, w.code);
        }
    for (int round = 0; round < rounds; ++round)
        for (auto& w : loads) {
            for (int i = 0; i < cells; ++i) w.ws_ms.push_back(time_cell(ws, w.code));
            for (int i = 0; i < cells; ++i) w.zmq_ms.push_back(time_cell(zmq, w.code));
        }

    std::printf("%d cells per workload and transport (%d rounds of %d), one %s kernel, times in ms\n\n",
                cells * rounds, rounds, cells, kernel.c_str());
    std::printf("| kernel, cell | transport | mean | median | p90 | median vs ZeroMQ |\n");
    std::printf("|---|---|---:|---:|---:|---:|\n");
    for (const auto& w : loads) {
        double zm = percentile(w.zmq_ms, 0.5), wm = percentile(w.ws_ms, 0.5);
        std::printf("| %s %s | ZeroMQ (direct) | %.2f | %.2f | %.2f | 1.00x |\n", kernel.c_str(), w.name.c_str(),
                    mean(w.zmq_ms), zm, percentile(w.zmq_ms, 0.9));
        std::printf("| %s %s | websocket (Jupyter Server) | %.2f | %.2f | %.2f | %.2fx (%+.2f) |\n", kernel.c_str(),
                    w.name.c_str(), mean(w.ws_ms), wm, percentile(w.ws_ms, 0.9), wm / zm, wm - zm);
    }
    return 0;
}
