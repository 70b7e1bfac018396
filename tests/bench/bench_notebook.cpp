// One notebook run through the library, for run_notebook_bench.py: reads
// NOTEBOOK, runs it in KERNEL (default: its own), writes OUT, and prints
// {"seconds": wall time from read to written, "maxrss_kb": this process's
// peak resident memory, VmHWM of /proc/self/status (not getrusage's
// ru_maxrss, which keeps the forking python's resident size across execve);
// the kernel is a separate process, not counted}.
//   bench_notebook NOTEBOOK OUT [KERNEL]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "kernex/error.hpp"
#include "kernex/notebook.hpp"

// This process's peak resident set size in kB (VmHWM), 0 when unknown.
long peak_rss_kb() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: bench_notebook NOTEBOOK OUT [KERNEL]\n";
        return 2;
    }
    try {
        auto t0 = std::chrono::steady_clock::now();
        auto nb = kernex::notebook::read(argv[1]);
        kernex::kernel_options ko{.kernel_name = argc > 3 ? argv[3] : nb.kernel_name()};
        auto r = kernex::execute_notebook(nb, {}, ko);
        nb.write(argv[2]);
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("{\"seconds\": %.4f, \"maxrss_kb\": %ld, \"status\": \"%s\"}\n", seconds, peak_rss_kb(),
                    std::string(kernex::to_string(r.status)).c_str());
        return r.status == kernex::notebook_status::ok ? 0 : 1;
    } catch (const kernex::error& e) {
        std::cerr << "bench_notebook: " << e.what() << "\n";
        return 2;
    }
}
