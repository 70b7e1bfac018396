// Per-block overhead of local_executor: a `true` bash block through it,
// plain and in the bubblewrap sandbox, against running `bash file.sh`
// directly (posix_spawn + waitpid, and fork + exec + waitpid) and through
// run_process alone, in one run, interleaved in rounds so that load on the
// machine hits every method alike.
//
//   bench_local_executor [N=500]
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "kernex/local_executor.hpp"
#include "kernex/process.hpp"

extern char** environ;

namespace {

using bench_clock = std::chrono::steady_clock;

int wait_for(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

struct method {
    std::string name;
    std::function<void()> run_once;
    std::vector<double> micros;
};

double percentile(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

double mean(const std::vector<double>& v) {
    double sum = 0;
    for (double x : v) sum += x;
    return sum / static_cast<double>(v.size());
}

}  // namespace

int main(int argc, char** argv) {
    const int n = argc > 1 ? std::atoi(argv[1]) : 500;
    const auto bash = kernex::find_program("bash", std::getenv("PATH") ? std::getenv("PATH") : "");
    if (!bash || n <= 0) {
        std::fprintf(stderr, "usage: bench_local_executor [N]; needs bash on PATH\n");
        return 2;
    }
    kernex::local_executor executor;
    kernex::local_executor_options sandboxed_options;
    sandboxed_options.sandbox.emplace();
    kernex::local_executor sandboxed(sandboxed_options);
    sandboxed_options.sandbox->resident_runner = false;
    kernex::local_executor sandboxed_per_block(sandboxed_options);
    const std::filesystem::path script = executor.work_dir() / "direct.sh";
    std::ofstream(script) << "true\n";
    const std::string bash_path = bash->string();
    const std::string script_path = script.string();
    char* direct_argv[] = {const_cast<char*>(bash_path.c_str()), const_cast<char*>(script_path.c_str()), nullptr};

    std::vector<method> methods = {
        {"bash file.sh, posix_spawn + waitpid",
         [&] {
             pid_t pid;
             if (::posix_spawn(&pid, bash_path.c_str(), nullptr, nullptr, direct_argv, environ) == 0) wait_for(pid);
         },
         {}},
        {"bash file.sh, fork + execv + waitpid",
         [&] {
             const pid_t pid = ::fork();
             if (pid == 0) {
                 ::execv(bash_path.c_str(), direct_argv);
                 ::_exit(127);
             }
             if (pid > 0) wait_for(pid);
         },
         {}},
        {"kernex::run_process(bash file.sh)",
         [&] {
             kernex::spawn_options options;
             options.argv = {bash_path, script_path};
             kernex::run_process(options, {});
         },
         {}},
        {"local_executor, ```bash true``` block",
         [&] {
             if (executor.execute({{"bash", "true\n"}}).exit_code != 0) std::abort();
         },
         {}},
        {"local_executor sandbox, bwrap per block, ```bash true``` block",
         [&] {
             if (sandboxed_per_block.execute({{"bash", "true\n"}}).exit_code != 0) std::abort();
         },
         {}},
        {"local_executor sandbox, resident runner, ```bash true``` block",
         [&] {
             if (sandboxed.execute({{"bash", "true\n"}}).exit_code != 0) std::abort();
         },
         {}},
    };

    for (auto& m : methods)
        for (int i = 0; i < 20; ++i) m.run_once();  // warm-up: page cache, dynamic loader, allocator

    const int rounds = 10;
    for (int round = 0; round < rounds; ++round)
        for (auto& m : methods)
            for (int i = 0; i < n / rounds + (round < n % rounds); ++i) {
                const auto start = bench_clock::now();
                m.run_once();
                m.micros.push_back(std::chrono::duration<double, std::micro>(bench_clock::now() - start).count());
            }

    const double direct_median = percentile(methods[0].micros, 0.5);
    const double direct_mean = mean(methods[0].micros);
    std::printf("N = %d blocks per method, interleaved in %d rounds; times per block in microseconds\n\n", n, rounds);
    std::printf("| method | mean | median | p90 | median vs direct | mean vs direct |\n");
    std::printf("|---|---:|---:|---:|---:|---:|\n");
    for (const auto& m : methods) {
        const double med = percentile(m.micros, 0.5);
        const double avg = mean(m.micros);
        std::printf("| %s | %.0f | %.0f | %.0f | %.2fx (%+.0f) | %.2fx (%+.0f) |\n", m.name.c_str(), avg, med,
                    percentile(m.micros, 0.9), med / direct_median, med - direct_median, avg / direct_mean,
                    avg - direct_mean);
    }
    return 0;
}
