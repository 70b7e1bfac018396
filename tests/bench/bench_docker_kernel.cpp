// The same kernel (python3, Debian's ipykernel) local (over tcp, the
// default, and over ipc, the container's transport) and in a Docker
// container, side by side: start-to-ready (kernel_manager::start, until the
// kernel answered kernel_info and iopub is proven) and the round trip of a
// cell (`pass`: execute_request to execute_reply and iopub idle). The three
// alternate, start by start and cell by cell, so load on the machine falls
// on all alike. It starts a dockerd of its own (root needed)
// with the docker suite's ipykernel image, unless --host names a daemon that
// has --image.
//
//   bench_docker_kernel [STARTS=5] [CELLS=200] [--host unix:///path/docker.sock --image IMAGE]
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "../docker/docker_test_support.hpp"
#include "bench_stats.hpp"
#include "kernex/kernel_manager.hpp"

namespace {

using kernex::bench::percentile;
using bench_clock = std::chrono::steady_clock;

double millis_since(bench_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(bench_clock::now() - start).count();
}

struct side {
    const char* name;
    kernex::kernel_options options;
    std::vector<double> start_ms;
    std::vector<double> cell_ms;
};

// One line per side: median and p90, and their ratios to the first side's.
void rows(const char* metric, const std::vector<side*>& sides, const std::vector<double> side::*field) {
    const double base_median = percentile(sides[0]->*field, 0.5), base_p90 = percentile(sides[0]->*field, 0.9);
    for (const side* s : sides) {
        const double median = percentile(s->*field, 0.5), p90 = percentile(s->*field, 0.9);
        std::printf("| %s | %s | %.1f | %.1f | %.2fx (%+.1f) | %.2fx |\n", metric, s->name, median, p90,
                    median / base_median, median - base_median, p90 / base_p90);
    }
}

}  // namespace

int main(int argc, char** argv) {
    auto args = kernex::test::parse_bench_args(argc, argv, kernex::test::ipykernel_image);
    if (!args.ok || args.numbers.size() > 2) {
        std::fprintf(stderr, "usage: bench_docker_kernel [STARTS] [CELLS] [--host URL --image IMAGE]\n");
        return 2;
    }
    const int starts = args.numbers.size() > 0 ? args.numbers[0] : 5;
    const int cells = args.numbers.size() > 1 ? args.numbers[1] : 200;
    std::string& host = args.host;
    const std::string& image = args.image;
    try {
        const auto daemon = kernex::test::bench_daemon(host, kernex::test::ensure_ipykernel_image);
        side local{"local, tcp", {}, {}, {}};
        side local_ipc{"local, ipc", {}, {}, {}};
        side docker{"container, ipc", {}, {}, {}};
        const std::vector<side*> sides = {&local, &local_ipc, &docker};
        for (side* s : sides) s->options.env = {{"PYDEVD_DISABLE_FILE_VALIDATION", "1"}};
        local_ipc.options.transport = "ipc";
        docker.options.docker.emplace();
        docker.options.docker->image = image;
        docker.options.docker->docker_host = host;

        // Warm-up: the first start of each pays for cold caches (the image's
        // layers, Python's bytecode), which later ones do not.
        for (side* s : sides) kernex::kernel_manager::start(s->options).shutdown();

        for (int round = 0; round < starts; ++round) {
            std::vector<kernex::kernel_manager> kernels;
            for (side* s : sides) {
                const auto t = bench_clock::now();
                kernels.push_back(kernex::kernel_manager::start(s->options));
                s->start_ms.push_back(millis_since(t));
            }
            for (auto& km : kernels) km.client().execute("pass");  // the first cell imports more
            for (int i = 0; i < std::max(1, cells / starts); ++i)
                for (std::size_t k = 0; k < kernels.size(); ++k) {
                    side& s = *sides[k];
                    const auto t = bench_clock::now();
                    const auto r = kernels[k].client().execute("pass", {.timeout = std::chrono::seconds(30)});
                    s.cell_ms.push_back(millis_since(t));
                    if (r.status != kernex::execution_status::ok)
                        throw std::runtime_error(std::string("a cell failed on the ") + s.name + " kernel");
                }
        }

        std::printf("python3 (ipykernel) local and in a container (network none; daemon %s, image %s)\n",
                    host.c_str(), image.c_str());
        std::printf("%d starts and %zu cells each, alternating; milliseconds\n\n", starts, local.cell_ms.size());
        std::printf("| | kernel | median | p90 | median vs local tcp | p90 vs local tcp |\n");
        std::printf("|---|---|---:|---:|---:|---:|\n");
        rows("start-to-ready", sides, &side::start_ms);
        rows("cell round trip (`pass`)", sides, &side::cell_ms);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_docker_kernel: %s\n", e.what());
        return 1;
    }
    return 0;
}
