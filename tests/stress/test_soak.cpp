// Soak: one kernel, thousands of cells. After a warm-up our RSS and our open
// fds must stay flat: a leak of a few bytes per cell shows over 10,000 cells.
#include <doctest/doctest.h>

#include "stress_support.hpp"

using namespace std::chrono_literals;
using namespace kernex;
using kernex::stress::figure;

namespace {

struct soak_figures {
    int cells = 0;
    int failures = 0;
    long rss_warm_kb = 0, rss_end_kb = 0, rss_max_kb = 0;
    std::size_t fds_warm = 0, fds_end = 0;
    double seconds = 0;
};

// A cell: its code, the stdout it must print and the status it must end with.
struct soak_cell {
    std::string code;
    std::string stdout_text;
    execution_status status = execution_status::ok;
};

// Runs cells on one kernel; cell(i) says what cell i is.
template <class Cell>
soak_figures soak(const std::string& kernel_name, int cells, Cell cell) {
    test::runtime_dir rt;
    soak_figures f;
    f.cells = cells;
    const int warmup = std::max(100, cells / 10);
    {
        auto ko = stress::kernel(kernel_name);
        // The replay guard grows until it holds replay_history signatures
        // (65,536 by default, ~8 messages a cell): bounded, but it would pass
        // for a leak here. A small history fills within the warm-up.
        ko.codec.replay_history = 1024;
        auto km = kernel_manager::start(ko);
        auto& kc = km.client();
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < cells; ++i) {
            if (i == warmup) {
                f.rss_warm_kb = test::status_kb("VmRSS");
                f.fds_warm = test::open_fds();
            }
            if (i > warmup) f.rss_max_kb = std::max(f.rss_max_kb, test::status_kb("VmRSS"));
            const soak_cell c = cell(i);
            auto r = kc.execute(c.code, {.timeout = 30s});
            if (r.status != c.status || r.stream_text() != c.stdout_text) {
                if (++f.failures <= 5)
                    MESSAGE("cell ", i, ": ", to_string(r.status), " ", r.note, " stdout: ", r.stream_text());
            }
        }
        f.seconds = stress::seconds_since(start);
        f.rss_end_kb = test::status_kb("VmRSS");
        f.fds_end = test::open_fds();
    }
    CHECK(rt.files() == 0);
    CHECK(test::children().empty());
    figure(("soak " + kernel_name).c_str(),
           "%d cells in %.1f s (%.0f us/cell), %d failures; our RSS %ld kB after %d warm-up cells, %ld kB at the "
           "end (max %ld kB, growth %+ld kB); open fds %zu after warm-up, %zu at the end",
           f.cells, f.seconds, f.seconds * 1e6 / cells, f.failures, f.rss_warm_kb, warmup, f.rss_end_kb,
           f.rss_max_kb, f.rss_end_kb - f.rss_warm_kb, f.fds_warm, f.fds_end);
    return f;
}

// Growth we allow after warm-up: allocator noise, not a per-cell leak
// (1 kB per cell over 10,000 cells would be 10 MB).
constexpr long allowed_growth_kb = 2048;

}  // namespace

TEST_CASE("soak: the test kernel, stream + result + state + an error now and then; RSS and fds flat") {
    auto f = soak("kernex-test", stress::scaled(2000, 10000), [](int i) -> soak_cell {
        std::string n = std::to_string(i);
        if (i % 50 == 49)  // an error cell, then the session goes on
            return {"print before " + n + "\nerror SoakError cell " + n + "\nprint never", "before " + n + "\n",
                    execution_status::error};
        return {"set k" + std::to_string(i % 16) + " " + n + "\nprint cell " + n + "\nget k" +
                    std::to_string(i % 16) + "\ndisplay d" + n + " shown\n" + n + "+1",
                "cell " + n + "\n" + n + "\n"};
    });
    CHECK(f.failures == 0);
    CHECK(f.fds_end == f.fds_warm);
    CHECK(f.rss_end_kb - f.rss_warm_kb < allowed_growth_kb);
    CHECK(f.rss_max_kb - f.rss_warm_kb < allowed_growth_kb);
}

TEST_CASE("soak: kernex-bash, state across cells; RSS and fds flat") {
    if (!stress::with_bash()) return;  // bash_kernel disabled on purpose
    auto f = soak("kernex-bash", stress::scaled(1000, 10000), [](int i) -> soak_cell {
        std::string n = std::to_string(i);
        if (i == 0) return {"count=0", ""};
        return {"count=$((count + 1)); echo cell " + n + " count $count", "cell " + n + " count " + n + "\n"};
    });
    CHECK(f.failures == 0);
    CHECK(f.fds_end == f.fds_warm);
    CHECK(f.rss_end_kb - f.rss_warm_kb < allowed_growth_kb);
}
