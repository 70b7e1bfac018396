// One notebook run through the library, for run_notebook_bench.py: reads
// NOTEBOOK, runs it in KERNEL (default: its own), writes OUT, and prints
// {"seconds": wall time from read to written, "maxrss_kb": this process's
// peak resident memory (the kernel is a separate process, not counted)}.
//   bench_notebook NOTEBOOK OUT [KERNEL]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "kernex/error.hpp"
#include "kernex/notebook.hpp"

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
        rusage ru{};
        ::getrusage(RUSAGE_SELF, &ru);
        std::printf("{\"seconds\": %.4f, \"maxrss_kb\": %ld, \"status\": \"%s\"}\n", seconds, ru.ru_maxrss,
                    std::string(kernex::to_string(r.status)).c_str());
        return r.status == kernex::notebook_status::ok ? 0 : 1;
    } catch (const kernex::error& e) {
        std::cerr << "bench_notebook: " << e.what() << "\n";
        return 2;
    }
}
