// Hostile peers: a kernel that sends a 100 MB message, floods iopub, forges
// and replays signatures, or never answers. The client must stay within its
// memory bound (what kernel_options::codec and execute_options say) and its
// deadlines, drop and count what fails verification, and never crash.
#include <malloc.h>

#include <doctest/doctest.h>

#include "kernex/error.hpp"

#include "stress_support.hpp"

using namespace std::chrono_literals;
using namespace kernex;
using kernex::stress::figure;
using steady = std::chrono::steady_clock;

namespace {

constexpr long mib_kb = 1024;  // a MiB in kB

kernel_options test_kernel() { return stress::kernel("kernex-test"); }

// Runs code and measures the peak of our RSS above what it was before (kB).
struct measured {
    execution result;
    long rss_before_kb = 0;
    long peak_growth_kb = 0;
    double seconds = 0;
};
measured run_measured(kernel_client& kc, const std::string& code, execute_options o) {
    measured m;
    ::malloc_trim(0);  // what earlier cases freed goes back, so the peak is this cell's
    test::reset_peak_rss();
    m.rss_before_kb = test::status_kb("VmRSS");
    const auto t0 = steady::now();
    m.result = kc.execute(code, o);
    m.seconds = stress::seconds_since(t0);
    m.peak_growth_kb = test::status_kb("VmHWM") - m.rss_before_kb;
    return m;
}

bool has_drop_notice(const execution& r) {
    auto* last = r.outputs.empty() ? nullptr : std::get_if<outputs::stream>(&r.outputs.back());
    return last && last->name == "stderr" && last->text.find("bytes of output dropped") != std::string::npos;
}

}  // namespace

// A message is parsed where ZeroMQ received it, the pages read handed back
// as its text is built (about 1x at the peak in a small program; this suite
// reads about 2x, see docs/reliability.md), and is kept once as output.
// The bound is the one from before (4.5x was measured then).
constexpr long message_peak_kb = 500 * mib_kb;  // for a 100 MiB message

TEST_CASE("hostile: a 100 MB message under the default limits is taken whole; our peak RSS stays under 5x") {
    test::runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    auto& kc = km.client();
    kc.execute("print warm", {.timeout = 10s});
    auto m = run_measured(kc, "big 100m\nprint after", {.timeout = 60s});
    const std::size_t size = m.result.stream_text().size();
    CHECK(m.result.status == execution_status::ok);
    CHECK(size > 100'000'000);
    CHECK(m.peak_growth_kb < message_peak_kb);
    figure("100 MB message, default limits", "%zu bytes kept in %.2f s; our peak RSS +%ld MiB over %ld MiB", size,
           m.seconds, m.peak_growth_kb / mib_kb, m.rss_before_kb / mib_kb);
}

TEST_CASE("hostile: a 100 MB message beyond max_output_bytes is dropped with a notice; memory returns") {
    test::runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    auto& kc = km.client();
    kc.execute("print warm", {.timeout = 10s});
    const long rss0 = test::status_kb("VmRSS");
    std::size_t seen = 0;
    auto m = run_measured(kc, "big 100m\nprint after",
                          {.timeout = 60s,
                           .on_output = [&](const output& o) { seen += std::get<outputs::stream>(o).text.size(); },
                           .max_output_bytes = 1 << 20});
    CHECK(m.result.status == execution_status::ok);
    CHECK(seen > 100'000'000);  // the handler saw it all
    CHECK(m.result.dropped_output_bytes > 100'000'000);
    CHECK(has_drop_notice(m.result));
    CHECK(m.result.stream_text().find("after\n") == 0);
    CHECK(m.peak_growth_kb < message_peak_kb);
    const long rss_after = test::status_kb("VmRSS");
    CHECK(rss_after - rss0 < 16 * mib_kb);
    figure("100 MB message, max_output_bytes 1 MiB", "dropped %llu bytes with a notice in %.2f s; peak RSS +%ld MiB, "
           "+%ld kB after the cell", static_cast<unsigned long long>(m.result.dropped_output_bytes), m.seconds,
           m.peak_growth_kb / mib_kb, rss_after - rss0);
}

TEST_CASE("hostile: a 100 MB message above max_message_bytes never reaches our memory; the cell ends in time") {
    test::runtime_dir rt;
    auto ko = test_kernel();
    ko.codec.max_message_bytes = 16 << 20;
    auto km = kernel_manager::start(ko);
    auto& kc = km.client();
    kc.execute("print warm", {.timeout = 10s});
    auto m = run_measured(kc, "print before\nbig 100m\nprint after", {.timeout = 20s});
    CHECK(m.peak_growth_kb < 32 * mib_kb);
    // ZeroMQ closed the iopub connection at the frame's size, losing what
    // followed: the cell ends idle_wait after its reply, saying so, and the
    // connection is remade for the next cell.
    CHECK(m.result.status == execution_status::ok);
    CHECK(m.result.stream_text() == "before\n");
    CHECK(m.result.note.find("idle status did not arrive") != std::string::npos);
    CHECK(m.seconds < 10);
    // The session goes on.
    auto next = kc.execute("print next", {.timeout = 20s});
    CHECK(next.status == execution_status::ok);
    CHECK(next.stream_text() == "next\n");
    figure("100 MB message, max_message_bytes 16 MiB", "cell %s in %.2f s (%s), peak RSS +%ld kB; next cell %s",
           std::string(to_string(m.result.status)).c_str(), m.seconds, m.result.note.c_str(), m.peak_growth_kb,
           std::string(to_string(next.status)).c_str());
}

TEST_CASE("hostile: an iopub flood; kept output bounded, every message seen, our peak RSS bounded") {
    test::runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    auto& kc = km.client();
    kc.execute("print warm", {.timeout = 10s});
    const int messages = stress::scaled(200'000, 1'000'000);
    std::size_t seen = 0;
    auto m = run_measured(kc, "flood " + std::to_string(messages),
                          {.timeout = 300s, .on_output = [&](const output&) { ++seen; }, .max_output_bytes = 1 << 20});
    CHECK(m.result.status == execution_status::ok);
    CHECK(seen == static_cast<std::size_t>(messages));
    CHECK(m.result.stream_text().size() < (1 << 20) + 200);
    CHECK(has_drop_notice(m.result));
    CHECK(m.peak_growth_kb < 64 * mib_kb);
    figure("flood", "%d stream messages in %.2f s (%.0f msg/s), all seen by on_output, %llu bytes dropped beyond "
           "1 MiB kept; peak RSS +%ld kB", messages, m.seconds, messages / m.seconds,
           static_cast<unsigned long long>(m.result.dropped_output_bytes), m.peak_growth_kb);

    // The same volume in 64 KiB messages, far more bytes.
    const long lines = stress::scaled(20'000'000, 80'000'000);
    std::size_t bytes = 0;
    auto big = run_measured(kc, "lines " + std::to_string(lines),
                            {.timeout = 300s,
                             .on_output = [&](const output& o) { bytes += std::get<outputs::stream>(o).text.size(); },
                             .max_output_bytes = 1 << 20});
    CHECK(big.result.status == execution_status::ok);
    CHECK(has_drop_notice(big.result));
    CHECK(big.peak_growth_kb < 128 * mib_kb);
    figure("flood of 64 KiB messages", "%ld lines, %zu bytes in %.2f s (%.0f MB/s); peak RSS +%ld kB", lines, bytes,
           big.seconds, bytes / big.seconds / 1e6, big.peak_growth_kb);
}

TEST_CASE("hostile: forged, unsigned and replayed iopub messages are dropped and counted, never shown") {
    test::runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    auto& kc = km.client();
    const int cells = stress::scaled(300, 2000);
    const auto before = kc.rejected();
    int wrong = 0;
    for (int i = 0; i < cells; ++i) {
        auto r = kc.execute("print ok " + std::to_string(i) + "\nforge\nprint done", {.timeout = 10s});
        if (r.status != execution_status::ok || r.stream_text() != "ok " + std::to_string(i) + "\ndone\n") ++wrong;
    }
    const auto after = kc.rejected();
    auto delta = [&](reject_reason why) { return after[why] - before[why]; };
    CHECK(wrong == 0);
    CHECK(delta(reject_reason::bad_signature) == static_cast<std::uint64_t>(cells));
    CHECK(delta(reject_reason::bad_signature_length) == static_cast<std::uint64_t>(cells));
    CHECK(delta(reject_reason::replayed) == static_cast<std::uint64_t>(cells));
    CHECK(after.total() - before.total() == 3u * static_cast<std::uint64_t>(cells));
    figure("forged messages", "%d cells, each with a forged, an unsigned and a replayed iopub message: %llu bad "
           "signature, %llu bad signature length, %llu replayed dropped; %d cells with a wrong output", cells,
           static_cast<unsigned long long>(delta(reject_reason::bad_signature)),
           static_cast<unsigned long long>(delta(reject_reason::bad_signature_length)),
           static_cast<unsigned long long>(delta(reject_reason::replayed)), wrong);
}

TEST_CASE("hostile: a kernel that never answers; every wait ends at its deadline") {
    test::runtime_dir rt;
    auto km = kernel_manager::start(test_kernel());
    auto& kc = km.client();

    // Never replies, but obeys an interrupt: ends at the timeout.
    auto noreply = kc.execute("noreply", {.timeout = 1s});
    CHECK(noreply.status == execution_status::timeout);
    CHECK(noreply.elapsed >= 1s);
    CHECK(noreply.elapsed < 3s);

    // Ignores the interrupt too: timeout, grace, then a restart.
    auto hang = kc.execute("hang", {.timeout = 1s, .interrupt_grace = 1s});
    CHECK(hang.status == execution_status::timeout);
    CHECK(hang.restarted);
    CHECK(hang.elapsed >= 2s);
    CHECK(hang.elapsed < 8s);
    CHECK(kc.execute("print alive", {.timeout = 10s}).stream_text() == "alive\n");

    // A kernel that never starts answering: start gives up at ready_timeout.
    auto ko = test_kernel();
    ko.env["KERNEX_TEST_KERNEL_SLOW_START"] = "600000";
    ko.ready_timeout = 2s;
    const auto t0 = steady::now();
    try {
        kernel_manager::start(ko);
        FAIL("a kernel that never binds was reported ready");
    } catch (const error& e) {
        CHECK(e.code() == errc::timeout);
    }
    const double never_ready = stress::seconds_since(t0);
    CHECK(never_ready >= 2.0);
    CHECK(never_ready < 2.0 + 5.0);
    figure("never answers", "noreply cell with a 1 s timeout ended after %.2f s; hang (SIGINT ignored, grace 1 s) "
           "after %.2f s with a restart; a kernel never ready: start gave up after %.2f s (ready_timeout 2 s)",
           std::chrono::duration<double>(noreply.elapsed).count(), std::chrono::duration<double>(hang.elapsed).count(),
           never_ready);
}
