// Per-block latency of docker_executor (files bind, and files copy: the code
// file in and /workspace back through the archive endpoint; each with the
// resident runner, the default, and with an Engine API exec per block, the
// fallback) against a bare Engine API exec of the same command (`sh FILE` in
// /workspace, FILE holding `true`: create the exec, start it reading its
// stream, inspect it for the exit code) and against local_executor's block
// (a process on this host, no sandbox). All run against one dockerd,
// interleaved in rounds so that load on the machine falls on all alike. It starts a dockerd of its own (root needed)
// with the docker suite's busybox image, unless --host names a daemon that
// has --image. Its own dockerd also speaks TLS (--tlsverify, certificates
// made with openssl, on 127.0.0.1) for the rows "over TLS": files copy (the
// default for a tcp:// daemon), with the runner and with an exec per block,
// as a remote daemon is reached; those rows are left out with --host.
//
//   bench_docker_executor [N=200] [--host unix:///path/docker.sock --image IMAGE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../docker/docker_test_support.hpp"
#include "bench_stats.hpp"
#include "kernex/docker_executor.hpp"
#include "kernex/local_executor.hpp"

namespace {

using kernex::bench::mean;
using kernex::bench::percentile;
using bench_clock = std::chrono::steady_clock;

using kernex::bench::method;

}  // namespace

int main(int argc, char** argv) {
    auto args = kernex::test::parse_bench_args(argc, argv, kernex::test::busybox_image);
    if (!args.ok || args.numbers.size() > 1) {
        std::fprintf(stderr, "usage: bench_docker_executor [N] [--host URL --image IMAGE]\n");
        return 2;
    }
    const int n = args.numbers.empty() ? 200 : args.numbers[0];
    std::string& host = args.host;
    const std::string& image = args.image;
    try {
        // Our own daemon: plain on its unix socket, TLS on 127.0.0.1.
        std::unique_ptr<kernex::test::tls_dockerd> daemon;
        if (host.empty()) {
            daemon = std::make_unique<kernex::test::tls_dockerd>();
            host = daemon->daemon.host();
            auto c = daemon->daemon.client();
            kernex::test::ensure_busybox_image(c);
        }
        kernex::docker_client client({.host = host, .timeout = std::chrono::seconds(30)});
        kernex::docker_executor_options options;
        options.image = image;
        options.docker_host = host;
        options.files = "bind";
        kernex::docker_executor executor(options);
        // The same daemon with files "copy": the code file in through the
        // archive endpoint, /workspace back after the block.
        kernex::docker_executor_options copy_options = options;
        copy_options.files = "copy";
        kernex::docker_executor copying(copy_options);
        // The same two with an Engine API exec per block instead of the
        // resident runner (the fallback path).
        options.resident_runner = false;
        copy_options.resident_runner = false;
        kernex::docker_executor executor_per_exec(options);
        kernex::docker_executor copying_per_exec(copy_options);
        // Over TLS, as a remote daemon is reached (files copy, its default there).
        std::unique_ptr<kernex::docker_executor> tls_copying, tls_copying_per_exec;
        if (daemon) {
            kernex::docker_executor_options t = copy_options;
            t.docker_host = daemon->host;
            t.tls = daemon->tls();
            t.resident_runner = false;
            tls_copying_per_exec = std::make_unique<kernex::docker_executor>(t);
            t.resident_runner = true;
            tls_copying = std::make_unique<kernex::docker_executor>(t);
        }
        // A local block, the floor the runner is measured against.
        kernex::local_executor local;
        const std::vector<kernex::code_block> block = {{"sh", "true"}};
        // Writes the block's file, which the bare exec then runs too.
        const auto first = executor.execute(block);
        if (first.exit_code != 0 || first.code_files.size() != 1) {
            std::fprintf(stderr, "the block failed: %s\n", first.output.c_str());
            return 1;
        }
        auto says = [](const kernex::code_result& r, const char* what) {
            return !r.notes.empty() && r.notes[0].find(what) != std::string::npos;
        };
        if (!says(first, "blocks: the resident runner") || !says(copying.execute(block), "blocks: the resident runner") ||
            !says(executor_per_exec.execute(block), "blocks: an Engine API exec each") ||
            (tls_copying && !says(tls_copying->execute(block), "blocks: the resident runner"))) {
            std::fprintf(stderr, "the executors did not take the paths measured: %s\n", first.notes[0].c_str());
            return 1;
        }
        const std::string file = first.code_files[0].filename().string();
        const std::string user = std::to_string(::getuid()) + ":" + std::to_string(::getgid());

        std::vector<method> methods = {
            {"bare Engine API exec: sh FILE (create, start + stream, inspect)",
             [&] {
                 const std::string id = client.create_exec(
                     executor.container_id(),
                     {.cmd = {"sh", file}, .env = {}, .working_dir = "/workspace", .user = user});
                 client.start_exec(id, {.deadline = bench_clock::now() + std::chrono::seconds(30),
                                        .on_output = {},
                                        .cancel_fd = -1});
                 std::optional<int> code;
                 while (!(code = client.exec_exit_code(id))) std::this_thread::sleep_for(std::chrono::milliseconds(1));
                 if (*code != 0) throw std::runtime_error("the bare exec failed");
             },
             {}},
            {"docker_executor.execute(```sh true```), files bind, exec per block",
             [&] {
                 if (executor_per_exec.execute(block).exit_code != 0) throw std::runtime_error("the block failed");
             },
             {}},
            {"docker_executor.execute(```sh true```), files bind, resident runner",
             [&] {
                 if (executor.execute(block).exit_code != 0) throw std::runtime_error("the block failed");
             },
             {}},
            {"docker_executor.execute(```sh true```), files copy, exec per block",
             [&] {
                 if (copying_per_exec.execute(block).exit_code != 0) throw std::runtime_error("the block failed");
             },
             {}},
            {"docker_executor.execute(```sh true```), files copy, resident runner",
             [&] {
                 if (copying.execute(block).exit_code != 0) throw std::runtime_error("the block failed");
             },
             {}},
        };
        if (tls_copying) {
            methods.push_back({"docker_executor.execute(```sh true```), files copy, exec per block, over TLS",
                               [&] {
                                   if (tls_copying_per_exec->execute(block).exit_code != 0)
                                       throw std::runtime_error("the block failed");
                               },
                               {}});
            methods.push_back({"docker_executor.execute(```sh true```), files copy, resident runner, over TLS",
                               [&] {
                                   if (tls_copying->execute(block).exit_code != 0)
                                       throw std::runtime_error("the block failed");
                               },
                               {}});
        }
        methods.push_back(
            {"local_executor.execute(```sh true```) (no container)",
             [&] {
                 if (local.execute(block).exit_code != 0) throw std::runtime_error("the block failed");
             },
             {}});

        for (auto& m : methods) m.run_once();  // warm up
        const int rounds = 10;
        for (int round = 0; round < rounds; ++round)
            for (auto& m : methods)
                for (int i = 0; i < std::max(1, n / rounds); ++i) {
                    const auto start = bench_clock::now();
                    m.run_once();
                    m.micros.push_back(
                        std::chrono::duration<double, std::micro>(bench_clock::now() - start).count());
                }

        const double base_median = percentile(methods[0].micros, 0.5);
        const double base_mean = mean(methods[0].micros);
        const double local_median = percentile(methods.back().micros, 0.5);
        std::printf("%zu blocks per method, %d rounds; times per block in microseconds (daemon: %s)\n\n",
                    methods[0].micros.size(), rounds, host.c_str());
        std::printf("| method | mean | median | p90 | median vs bare | mean vs bare | median vs local |\n");
        std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
        for (const auto& m : methods) {
            const double med = percentile(m.micros, 0.5);
            const double avg = mean(m.micros);
            std::printf("| %s | %.0f | %.0f | %.0f | %.2fx (%+.0f) | %.2fx (%+.0f) | %.2fx |\n", m.name.c_str(), avg,
                        med, percentile(m.micros, 0.9), med / base_median, med - base_median, avg / base_mean,
                        avg - base_mean, med / local_median);
        }
        executor.stop();
        copying.stop();
        executor_per_exec.stop();
        copying_per_exec.stop();
        if (tls_copying) tls_copying->stop();
        if (tls_copying_per_exec) tls_copying_per_exec->stop();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_docker_executor: %s\n", e.what());
        return 1;
    }
    return 0;
}
