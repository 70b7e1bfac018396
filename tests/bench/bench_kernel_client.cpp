// Benchmark: kernex's kernel_manager + kernel_client on a kernel, printed as
// one JSON object (run_kernel_bench.py puts it beside jupyter_client's).
//   bench_kernel_client KERNEL_NAME CELL_CODE STREAM_CODE [CELLS] [STARTS]
// Measures start-to-ready, per-cell round trip (reply and iopub idle), a
// streaming cell (time until all its output arrived), and shutdown.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "kernex/kernel_manager.hpp"

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

double ms_since(steady::time_point t0) { return std::chrono::duration<double, std::milli>(steady::now() - t0).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::cerr << "usage: bench_kernel_client KERNEL_NAME CELL_CODE STREAM_CODE [CELLS] [STARTS]\n";
        return 2;
    }
    std::string kernel = argv[1], cell = argv[2], stream = argv[3];
    int cells = argc > 4 ? std::stoi(argv[4]) : 200;
    int starts = argc > 5 ? std::stoi(argv[5]) : 5;

    std::vector<double> start_ms, shutdown_ms, cell_ms;
    double stream_ms = 0;
    std::size_t stream_bytes = 0;
    for (int s = 0; s < starts; ++s) {
        auto t0 = steady::now();
        auto km = kernex::kernel_manager::start({.kernel_name = kernel});
        start_ms.push_back(ms_since(t0));
        auto& kc = km.client();
        if (s == 0) {
            for (int i = 0; i < 10; ++i) kc.execute(cell);  // warm-up
            for (int i = 0; i < cells; ++i) {
                auto c0 = steady::now();
                auto r = kc.execute(cell);
                cell_ms.push_back(ms_since(c0));
                if (r.status != kernex::execution_status::ok) {
                    std::cerr << "cell failed: " << kernex::to_string(r.status) << "\n";
                    return 1;
                }
            }
            auto s0 = steady::now();
            auto r = kc.execute(stream, {.on_output = [&](const kernex::output& o) {
                                             if (auto* st = std::get_if<kernex::outputs::stream>(&o))
                                                 stream_bytes += st->text.size();
                                         }});
            stream_ms = ms_since(s0);
            if (r.status != kernex::execution_status::ok) return 1;
        }
        auto d0 = steady::now();
        km.shutdown();
        shutdown_ms.push_back(ms_since(d0));
    }
    double mean = std::accumulate(cell_ms.begin(), cell_ms.end(), 0.0) / static_cast<double>(cell_ms.size());
    nlohmann::json out{{"client", "kernex"},
                       {"kernel", kernel},
                       {"start_ms", median(start_ms)},
                       {"cell_ms_mean", mean},
                       {"cell_ms_median", median(cell_ms)},
                       {"stream_ms", stream_ms},
                       {"stream_bytes", stream_bytes},
                       {"shutdown_ms", median(shutdown_ms)}};
    std::cout << out.dump() << std::endl;
    return 0;
}
