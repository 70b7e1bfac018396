// Process start of the kernex CLI, as an agent that shells out once per turn
// pays it: `kernex --version` and `kernex exec` of a one-block `true` message,
// side by side with /bin/true and a bare `bash file.sh` of the same block, in
// one run, interleaved in rounds so that load on the machine hits every
// command alike. Each spawn is posix_spawn + wait4, output to /dev/null;
// besides wall time, the CPU time of the command and the children it
// waited for (wait4's rusage), which load on the machine inflates less.
//
//   bench_cli_start KERNEX [N=200] [BASELINE_KERNEX]
//
// BASELINE_KERNEX (another build of kernex, say main's before a change):
// its `exec` joins the rounds, so a before/after comparison sees the same
// load.
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench_stats.hpp"

extern char** environ;

namespace {

using bench_clock = std::chrono::steady_clock;

struct command {
    std::string name;
    std::vector<std::string> argv;
    std::vector<double> micros;
    std::vector<double> cpu_micros;
};

// Spawns argv with stdin, stdout and stderr on /dev/null and waits for it;
// false if it could not be spawned or did not exit 0. cpu_micros: its user
// and system time, with its waited-for children's.
bool spawn_and_wait(const std::vector<std::string>& argv, double* cpu_micros = nullptr) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return false;
    int status = 0;
    rusage usage{};
    while (::wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {}
    if (cpu_micros) {
        const auto micros = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec); };
        *cpu_micros = micros(usage.ru_utime) + micros(usage.ru_stime);
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string load_average() {
    std::ifstream in("/proc/loadavg");
    std::string a, b, c;
    in >> a >> b >> c;
    return a + " " + b + " " + c + "\n";
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_cli_start KERNEX [N=200] [BASELINE_KERNEX]\n");
        return 2;
    }
    const std::string kernex = std::filesystem::absolute(argv[1]).string();
    const int n = argc > 2 ? std::atoi(argv[2]) : 200;
    if (n <= 0) {
        std::fprintf(stderr, "bench_cli_start: N must be positive\n");
        return 2;
    }
    const std::string bash = "/bin/bash";
    const auto dir = std::filesystem::temp_directory_path() /
                     ("kernex-bench-cli-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto script = (dir / "block.sh").string();
    const auto message = (dir / "message.md").string();
    std::ofstream(script) << "true\n";
    std::ofstream(message) << "```bash\ntrue\n```\n";

    std::vector<command> commands = {
        {"/bin/true", {"/bin/true"}, {}, {}},
        {"kernex --version", {kernex, "--version"}, {}, {}},
        {"bash block.sh (bare spawn)", {bash, script}, {}, {}},
        {"kernex exec message.md", {kernex, "exec", message}, {}, {}},
    };
    if (argc > 3)
        commands.push_back({"baseline kernex exec message.md",
                            {std::filesystem::absolute(argv[3]).string(), "exec", message}, {}, {}});
    // Warm-up: page cache, and a failure to run is said before any figure.
    for (auto& c : commands) {
        if (!spawn_and_wait(c.argv)) {
            std::fprintf(stderr, "bench_cli_start: %s did not exit 0\n", c.name.c_str());
            std::filesystem::remove_all(dir);
            return 1;
        }
    }
    // Odd rounds run the commands in reverse order: whatever runs right
    // after another command (a cache it left cold, the CPU it warmed up)
    // falls on every command alike.
    for (int round = 0; round < n; ++round) {
        for (std::size_t k = 0; k < commands.size(); ++k) {
            auto& c = commands[round % 2 == 0 ? k : commands.size() - 1 - k];
            const auto start = bench_clock::now();
            double cpu = 0;
            spawn_and_wait(c.argv, &cpu);
            c.micros.push_back(
                std::chrono::duration<double, std::micro>(bench_clock::now() - start).count());
            c.cpu_micros.push_back(cpu);
        }
    }
    std::filesystem::remove_all(dir);

    std::printf("| command (ms) | median | mean | p90 | CPU median |\n|---|---:|---:|---:|---:|\n");
    for (const auto& c : commands) {
        std::printf("| %s | %.3f | %.3f | %.3f | %.3f |\n", c.name.c_str(),
                    kernex::bench::percentile(c.micros, 0.5) / 1000,
                    kernex::bench::mean(c.micros) / 1000,
                    kernex::bench::percentile(c.micros, 0.9) / 1000,
                    kernex::bench::percentile(c.cpu_micros, 0.5) / 1000);
    }
    const double exec_over = (kernex::bench::percentile(commands[3].micros, 0.5) -
                              kernex::bench::percentile(commands[2].micros, 0.5)) / 1000;
    const double exec_over_cpu = (kernex::bench::percentile(commands[3].cpu_micros, 0.5) -
                                  kernex::bench::percentile(commands[2].cpu_micros, 0.5)) / 1000;
    std::printf("\nN=%d rounds; load average %s", n, load_average().c_str());
    std::printf("kernex exec above the bare spawn of its block: %.3f ms wall, %.3f ms CPU (medians)\n",
                exec_over, exec_over_cpu);
    if (commands.size() > 4) {
        std::printf("baseline kernex exec above the bare spawn: %.3f ms wall, %.3f ms CPU (medians)\n",
                    (kernex::bench::percentile(commands[4].micros, 0.5) -
                     kernex::bench::percentile(commands[2].micros, 0.5)) / 1000,
                    (kernex::bench::percentile(commands[4].cpu_micros, 0.5) -
                     kernex::bench::percentile(commands[2].cpu_micros, 0.5)) / 1000);
        // Round by round, exec against the baseline's exec: the load of
        // that moment hits both, so this difference is far steadier than
        // the difference of the two medians above.
        std::vector<double> paired_wall, paired_cpu;
        for (std::size_t r = 0; r < commands[3].micros.size(); ++r) {
            paired_wall.push_back(commands[3].micros[r] - commands[4].micros[r]);
            paired_cpu.push_back(commands[3].cpu_micros[r] - commands[4].cpu_micros[r]);
        }
        std::printf("kernex exec minus the baseline's, paired by round: %+.3f ms wall, %+.3f ms CPU (medians)\n",
                    kernex::bench::percentile(paired_wall, 0.5) / 1000,
                    kernex::bench::percentile(paired_cpu, 0.5) / 1000);
    }
    std::printf("kernex --version / /bin/true: %.2fx wall, %.2fx CPU (medians)\n",
                kernex::bench::percentile(commands[1].micros, 0.5) /
                    kernex::bench::percentile(commands[0].micros, 0.5),
                kernex::bench::percentile(commands[1].cpu_micros, 0.5) /
                    std::max(1.0, kernex::bench::percentile(commands[0].cpu_micros, 0.5)));
    return 0;
}
