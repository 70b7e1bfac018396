// Many kernels under one multi_kernel_manager, each driven from a thread of
// its own: started concurrently, no failure, no port handed out twice,
// nothing left after shutdown_all. Then the same with kill -9 of random
// kernels mid-run: each killed kernel's cells end kernel_died or run on the
// restarted kernel (per its autorestart policy); every other kernel is
// unaffected.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <doctest/doctest.h>

#include "kernex/multi_kernel_manager.hpp"

#include "stress_support.hpp"

using namespace std::chrono_literals;
using namespace kernex;
using kernex::stress::figure;
using steady = std::chrono::steady_clock;

namespace {

// Half the kernels are kernex-bash (the real native kernel), half the test kernel.
bool is_bash(int index) { return stress::with_bash() && index % 2 == 0; }

// Cell i of kernel `index`: its code and the stdout it must print. `slow`
// cells sleep ~20 ms, so a kill usually lands while one is running.
std::pair<std::string, std::string> make_cell(int index, int i, bool slow) {
    const std::string tag = "k" + std::to_string(index) + " cell " + std::to_string(i);
    if (is_bash(index))
        return {(slow ? "sleep 0.02; " : "") + std::string("n=") + std::to_string(i) + "; echo " + tag,
                tag + "\n"};
    return {(slow ? "sleep 20\n" : "") + std::string("set n ") + std::to_string(i) + "\nprint " + tag, tag + "\n"};
}

struct kernel_run {
    std::string id;
    std::shared_ptr<kernel_manager> km;
    std::string start_error;
    std::string exception;  // the first one execute threw
    std::vector<execution_status> statuses;
    int wrong_output = 0;  // ok cells whose stdout was not theirs
    std::chrono::nanoseconds slowest{};
    std::vector<int> pgids;  // every kernel process group seen (a restart makes a new one)
};

struct fleet_options {
    int kernels = 0;
    int cells = 0;
    bool slow_cells = false;
    std::function<bool(int)> autorestart = [](int) { return true; };
};

// Starts the kernels concurrently, each from its own thread, which then runs
// its cells. `published` receives each kernel once it is ready (for a killer).
struct fleet {
    multi_kernel_manager mkm;
    std::vector<kernel_run> runs;
    std::mutex mutex;  // guards ready
    std::vector<int> ready;  // indices of started kernels
    std::unique_ptr<std::atomic<int>[]> cells_done;  // per kernel, readable while it runs
    double start_seconds = 0, wall_seconds = 0;

    void run(const fleet_options& o) {
        runs.resize(static_cast<std::size_t>(o.kernels));
        cells_done = std::make_unique<std::atomic<int>[]>(static_cast<std::size_t>(o.kernels));
        std::vector<std::thread> threads;
        const auto t0 = steady::now();
        std::atomic<long long> last_ready_ns{0};
        for (int k = 0; k < o.kernels; ++k)
            threads.emplace_back([&, k] {
                auto& run = runs[static_cast<std::size_t>(k)];
                try {
                    auto ko = stress::kernel(is_bash(k) ? "kernex-bash" : "kernex-test");
                    ko.autorestart = o.autorestart(k);
                    run.id = mkm.start(ko);
                    run.km = mkm.get(run.id);
                } catch (const std::exception& e) {
                    run.start_error = e.what();
                    return;
                }
                long long ns = (steady::now() - t0).count();
                for (long long seen = last_ready_ns.load(); ns > seen && !last_ready_ns.compare_exchange_weak(seen, ns);) {
                }
                run.pgids.push_back(run.km->pid());
                {
                    std::lock_guard lock(mutex);
                    ready.push_back(k);
                }
                auto& kc = run.km->client();
                for (int i = 0; i < o.cells; ++i) {
                    auto [code, expected] = make_cell(k, i, o.slow_cells);
                    execution r;
                    try {
                        r = kc.execute(code, {.timeout = 60s});
                    } catch (const std::exception& e) {
                        // Counted as a failure (a status no check accepts), not a crash.
                        r.status = execution_status::aborted;
                        if (run.exception.empty()) run.exception = e.what();
                    }
                    run.statuses.push_back(r.status);
                    run.slowest = std::max(run.slowest, std::chrono::nanoseconds(r.elapsed));
                    if (r.status == execution_status::ok && r.stream_text() != expected) ++run.wrong_output;
                    int pid = run.km->pid();
                    if (pid > 0 && std::find(run.pgids.begin(), run.pgids.end(), pid) == run.pgids.end())
                        run.pgids.push_back(pid);
                    ++cells_done[static_cast<std::size_t>(k)];
                }
            });
        for (auto& t : threads) t.join();
        start_seconds = static_cast<double>(last_ready_ns.load()) / 1e9;
        wall_seconds = stress::seconds_since(t0);
    }

    // Shuts everything down and checks nothing is left: no child, no
    // process in any kernel's group, no file in the runtime dir.
    void shutdown_and_check(const test::runtime_dir& rt) {
        const auto t0 = steady::now();
        mkm.shutdown_all();
        const double seconds = stress::seconds_since(t0);
        std::size_t left = 0;
        for (auto& run : runs) {
            run.km.reset();
            for (int pgid : run.pgids) left += test::group_members(pgid).size();
        }
        CHECK(test::eventually([] { return test::children().empty(); }, 5s));
        CHECK(left == 0);
        CHECK(rt.files() == 0);
        figure("shutdown_all", "%zu kernels in %.2f s; processes left: %zu children, %zu in the kernels' groups; "
               "runtime dir files left: %zu", runs.size(), seconds, test::children().size(), left, rt.files());
    }
};

}  // namespace

TEST_CASE("many kernels: started concurrently, cells from their own threads, 0 failures, 0 port collisions") {
    test::runtime_dir rt;
    const long fd_limit = test::raise_fd_limit();
    const int kernels = stress::scaled(40, 100), cells = stress::scaled(50, 100);
    // One kernel first, so what lives as long as the process (ZeroMQ's
    // context and I/O thread) is in the "before" figures.
    kernel_manager::start(stress::kernel("kernex-test")).shutdown();
    std::this_thread::sleep_for(300ms);  // ZeroMQ closes that kernel's sockets in its own thread
    const long rss_before = test::status_kb("VmRSS");
    const std::size_t fds_before = test::open_fds();

    fleet f;
    f.run({.kernels = kernels, .cells = cells});

    int start_failures = 0, cell_failures = 0, wrong = 0;
    for (const auto& run : f.runs) {
        if (!run.start_error.empty()) {
            if (++start_failures <= 3) MESSAGE("start failed: ", run.start_error);
            continue;
        }
        CHECK_MESSAGE(run.exception.empty(), "execute threw: ", run.exception);
        cell_failures += static_cast<int>(std::count_if(run.statuses.begin(), run.statuses.end(),
                                                        [](auto s) { return s != execution_status::ok; }));
        wrong += run.wrong_output;
    }
    CHECK(start_failures == 0);
    CHECK(cell_failures == 0);
    CHECK(wrong == 0);

    // Ports: every one of the 5 x N distinct; no kernel had to move
    // (a collision with anything would show as EADDRINUSE in its log) or restart.
    std::set<int> ports;
    int port_count = 0, moved = 0, restarted = 0;
    long kernel_rss_kb[2] = {0, 0};
    int kind_count[2] = {0, 0};
    for (const auto& run : f.runs) {
        if (!run.km) continue;
        const auto& c = run.km->connection();
        for (int p : {c.shell_port, c.iopub_port, c.stdin_port, c.control_port, c.hb_port}) {
            ports.insert(p);
            ++port_count;
        }
        const auto log = run.km->log_tail(1 << 16);
        if (log.find("Address already in use") != std::string::npos || log.find("EADDRINUSE") != std::string::npos)
            ++moved;
        restarted += run.km->restart_count();
        const int kind = run.km->spec().name == "kernex-bash" ? 0 : 1;
        for (int pid : test::group_members(run.km->pid())) kernel_rss_kb[kind] += stress::process_status_kb(pid, "VmRSS");
        ++kind_count[kind];
    }
    CHECK(ports.size() == static_cast<std::size_t>(port_count));
    CHECK(moved == 0);
    CHECK(restarted == 0);

    const long rss_loaded = test::status_kb("VmRSS");
    const std::size_t fds_loaded = test::open_fds();
    figure("many kernels", "%d kernels (kernex-bash and kernex-test, half each) x %d cells, each from its own thread: "
           "all ready after %.2f s, all done after %.2f s wall (%.0f cells/s); failures: %d start, %d cells, %d wrong "
           "output; ports %zu distinct of %d; kernels moved off a taken port: %d; restarts: %d",
           kernels, cells, f.start_seconds, f.wall_seconds, kernels * cells / f.wall_seconds, start_failures,
           cell_failures, wrong, ports.size(), port_count, moved, restarted);
    figure("many kernels memory", "our RSS %ld kB before, %ld kB with %d kernels: %.0f kB per kernel; open fds %zu "
           "before, %zu with the kernels (%.1f per kernel; soft limit %ld); kernel processes' RSS per kernel: "
           "kernex-bash %ld kB (with its bash), kernex-test %ld kB",
           rss_before, rss_loaded, kernels, static_cast<double>(rss_loaded - rss_before) / kernels, fds_before,
           fds_loaded, static_cast<double>(fds_loaded - fds_before) / kernels, fd_limit,
           kind_count[0] ? kernel_rss_kb[0] / kind_count[0] : 0, kind_count[1] ? kernel_rss_kb[1] / kind_count[1] : 0);

    f.shutdown_and_check(rt);
    CHECK(test::eventually([&] { return test::open_fds() <= fds_before; }, 5s));
    figure("many kernels fds", "%zu open before, %zu after shutdown_all", fds_before, test::open_fds());
}

TEST_CASE("faults: kill -9 of random kernels mid-run; their cells end kernel_died or run on the restarted "
          "kernel, every other kernel is unaffected") {
    test::runtime_dir rt;
    test::raise_fd_limit();
    const int kernels = stress::scaled(20, 100), cells = stress::scaled(100, 100), kills = stress::scaled(10, 30);
    // Odd quarters of the fleet do not restart: their cells after the kill must all be kernel_died.
    auto autorestart = [](int k) { return k % 4 < 2; };

    fleet f;
    std::atomic<bool> running{true};
    std::map<int, int> killed;  // kernel index -> kills
    std::vector<int> first_kill_cell(static_cast<std::size_t>(kernels), -1);
    std::thread killer([&] {
        std::mt19937 rng(12345);
        int done = 0;
        while (running && done < kills) {
            std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution(50, 150)(rng)));
            int k;
            {
                std::lock_guard lock(f.mutex);
                if (f.ready.size() < static_cast<std::size_t>(kernels)) continue;  // all running first
                k = f.ready[std::uniform_int_distribution<std::size_t>(0, f.ready.size() - 1)(rng)];
            }
            auto& run = f.runs[static_cast<std::size_t>(k)];
            if (!autorestart(k) && killed.count(k)) continue;  // already dead for good
            if (f.cells_done[static_cast<std::size_t>(k)].load() >= cells) continue;  // done: nothing to hit
            const int pid = run.km->pid();
            if (pid <= 0) continue;  // between a death and its restart
            if (first_kill_cell[static_cast<std::size_t>(k)] < 0)
                first_kill_cell[static_cast<std::size_t>(k)] = f.cells_done[static_cast<std::size_t>(k)].load();
            ::kill(pid, SIGKILL);
            ++killed[k];
            ++done;
        }
    });
    f.run({.kernels = kernels, .cells = cells, .slow_cells = true, .autorestart = autorestart});
    running = false;
    killer.join();

    int start_failures = 0, unaffected_bad = 0, died = 0, restarted_ok = 0, after_death_ok = 0, bad_status = 0;
    int wrong = 0, restarts = 0;
    std::chrono::nanoseconds slowest{};
    for (int k = 0; k < kernels; ++k) {
        const auto& run = f.runs[static_cast<std::size_t>(k)];
        if (!run.start_error.empty()) {
            ++start_failures;
            MESSAGE("start failed: ", run.start_error);
            continue;
        }
        CHECK_MESSAGE(run.exception.empty(), "kernel ", k, ": execute threw: ", run.exception);
        wrong += run.wrong_output;
        slowest = std::max(slowest, run.slowest);
        REQUIRE(run.statuses.size() == static_cast<std::size_t>(cells));
        if (!killed.count(k)) {
            unaffected_bad += static_cast<int>(std::count_if(run.statuses.begin(), run.statuses.end(),
                                                             [](auto s) { return s != execution_status::ok; }));
            continue;
        }
        restarts += run.km->restart_count();
        const int from = first_kill_cell[static_cast<std::size_t>(k)];
        bool dead_for_good = false;
        for (int i = 0; i < cells; ++i) {
            const auto s = run.statuses[static_cast<std::size_t>(i)];
            if (s == execution_status::kernel_died) {
                ++died;
                if (!autorestart(k)) dead_for_good = true;
            } else if (s == execution_status::ok) {
                if (dead_for_good) ++after_death_ok;  // a dead kernel cannot run a cell
                else if (autorestart(k) && i >= from) ++restarted_ok;
            } else {
                ++bad_status;
            }
            // Before its first kill a kernel is like any other.
            if (i < from && s != execution_status::ok) ++unaffected_bad;
        }
        // Cell `from` was running or about to when the kill came: it may have
        // finished first. Every later cell of a kernel that does not restart is kernel_died.
        if (!autorestart(k))
            for (int i = from + 1; i < cells; ++i)
                CHECK_MESSAGE(run.statuses[static_cast<std::size_t>(i)] == execution_status::kernel_died, "kernel ", k,
                              " cell ", i);
        else
            CHECK_MESSAGE(run.km->restart_count() >= 1, "kernel ", k);
    }
    CHECK(start_failures == 0);
    CHECK(unaffected_bad == 0);
    CHECK(bad_status == 0);
    CHECK(after_death_ok == 0);
    CHECK(wrong == 0);
    CHECK(died >= 1);          // some kill landed mid-cell
    CHECK(restarted_ok >= 1);  // and restarted kernels went on running cells
    CHECK(slowest < 30s);      // no cell waited for its 60 s timeout
    int total_kills = 0;
    for (auto& [k, n] : killed) total_kills += n;
    figure("faults", "%d kernels x %d cells of ~20 ms, %d kill -9 on %zu kernels (half restart, half not) in %.2f s "
           "wall: %d cells kernel_died, %d ok on restarted kernels (%d restarts), 0 expected elsewhere: %d other "
           "statuses, %d wrong outputs, %d failures on unaffected kernels; slowest cell %.2f s",
           kernels, cells, total_kills, killed.size(), f.wall_seconds, died, restarted_ok, restarts, bad_status,
           wrong, unaffected_bad, std::chrono::duration<double>(slowest).count());
    f.shutdown_and_check(rt);
}
