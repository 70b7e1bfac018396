// Benchmark: kernex's kernel_manager + kernel_client on a kernel, printed as
// one JSON object (run_kernel_bench.py puts it beside jupyter_client's).
//   bench_kernel_client KERNEL_NAME CELL_CODE STREAM_CODE [CELLS] [STARTS] [STREAMS]
// Measures start-to-ready, per-cell round trip (reply and iopub idle), a
// streaming cell (time until all its output arrived; median of STREAMS runs
// after one warm-up), and shutdown; and the floors under them: the same
// cells over bare sockets, the kernel's own start, its own streaming time.
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "kernex/kernel_manager.hpp"
#include "kernex/process.hpp"

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

double ms_since(steady::time_point t0) { return std::chrono::duration<double, std::milli>(steady::now() - t0).count(); }

// CPU time (user + system) a process used so far, in ms: ourselves
// (pid 0, getrusage) or another (/proc/PID/stat).
double cpu_ms(int pid = 0) {
    if (pid == 0) {
        rusage u{};
        ::getrusage(RUSAGE_SELF, &u);
        return (static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 +
                static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3);
    }
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto close = stat.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 14 and 15: utime, stime (clock ticks)
        if (i == 14) utime = std::stod(field);
        if (i == 15) stime = std::stod(field);
    }
    return (utime + stime) * 1e3 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// CPU time of the calling thread so far, in ms.
double thread_cpu_ms() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

// The floor under any client: the same cells over bare ZeroMQ sockets, with
// requests signed beforehand and replies recognised by substring, no JSON
// parsing or verification. kernex's overhead is its time minus this; the two
// are timed alternately, cell by cell, so load on the machine falls on both.
class raw_client {
public:
    raw_client(const kernex::connection_info& info, const std::string& cell, int cells)
        : m_shell(m_ctx, zmq::socket_type::dealer), m_iopub(m_ctx, zmq::socket_type::sub) {
        m_shell.set(zmq::sockopt::linger, 0);
        m_iopub.set(zmq::sockopt::linger, 0);
        m_iopub.set(zmq::sockopt::subscribe, "");
        m_shell.connect(info.shell_endpoint());
        m_iopub.connect(info.iopub_endpoint());
        kernex::frame_codec codec(info.key, info.signature_scheme);
        auto session = kernex::new_id();
        for (int i = 0; i < cells; ++i) {
            auto m = kernex::make_request("execute_request",
                                          {{"code", cell}, {"silent", false}, {"store_history", true},
                                           {"user_expressions", nlohmann::json::object()}, {"allow_stdin", false},
                                           {"stop_on_error", true}},
                                          session);
            m_ids.push_back(m.header.msg_id);
            m_requests.push_back(codec.encode(m));
        }
        std::this_thread::sleep_for(200ms);  // let the subscription reach the kernel
    }

    // Runs the next cell; returns its round trip in ms.
    double round_trip() {
        auto t0 = steady::now();
        const auto& frames = m_requests.at(m_next);
        const auto& id = m_ids.at(m_next++);
        run(frames, id);
        return ms_since(t0);
    }

    // Runs code once (a request signed now); returns the time until its
    // reply and idle arrived, in ms: what the kernel needs to produce the
    // cell's output, with no client work on it.
    double run_once(const kernex::connection_info& info, const std::string& code) {
        kernex::frame_codec codec(info.key, info.signature_scheme);
        auto m = kernex::make_request("execute_request",
                                      {{"code", code}, {"silent", false}, {"store_history", true},
                                       {"user_expressions", nlohmann::json::object()}, {"allow_stdin", false},
                                       {"stop_on_error", true}},
                                      kernex::new_id());
        auto frames = codec.encode(m);
        auto t0 = steady::now();
        run(frames, m.header.msg_id);
        return ms_since(t0);
    }

private:
    void run(const std::vector<std::string>& frames, const std::string& id) {
        for (std::size_t f = 0; f < frames.size(); ++f)
            m_shell.send(zmq::buffer(frames[f]), f + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
        bool reply = false, idle = false;
        while (!(reply && idle)) {
            zmq::pollitem_t items[2] = {{m_shell.handle(), 0, ZMQ_POLLIN, 0}, {m_iopub.handle(), 0, ZMQ_POLLIN, 0}};
            zmq::poll(items, 2, std::chrono::milliseconds(5000));
            if (items[0].revents & ZMQ_POLLIN) {
                m_parts.clear();
                (void)zmq::recv_multipart(m_shell, std::back_inserter(m_parts));
                reply = true;
            }
            if (items[1].revents & ZMQ_POLLIN) {
                m_parts.clear();
                (void)zmq::recv_multipart(m_iopub, std::back_inserter(m_parts));
                // [topic, delimiter, signature, header, parent, metadata, content]
                if (m_parts.size() >= 4 && m_parts.back().to_string_view().find("\"idle\"") != std::string_view::npos &&
                    m_parts[m_parts.size() - 3].to_string_view().find(id) != std::string_view::npos)
                    idle = true;
            }
        }
    }

    zmq::context_t m_ctx{1};
    zmq::socket_t m_shell;
    zmq::socket_t m_iopub;
    std::vector<std::vector<std::string>> m_requests;
    std::vector<std::string> m_ids;
    std::vector<zmq::message_t> m_parts;
    std::size_t m_next = 0;
};

// The kernel's own start-up: the same kernelspec spawned directly, until it
// first answers a kernel_info_request on shell (a fresh request every 2 ms
// on a bare DEALER socket). kernex's start-to-ready minus this is what kernex
// adds (its ready also proves the iopub subscription). With streams > 0, the
// kernel then runs the stream cell that many times (after one warm-up) for a
// raw client alone, its only subscriber: the kernel's own streaming time,
// the floor under any client's, appended to stream_ms.
double bare_start_ms(const std::string& kernel, const std::string& stream = {}, int streams = 0,
                     std::vector<double>* stream_ms = nullptr) {
    auto spec = kernex::find_kernelspec(kernel);
    auto info = kernex::allocate_ports({});
    auto file = std::filesystem::temp_directory_path() / ("kernex-bench-" + kernex::new_id() + ".json");
    kernex::write_connection_file(file, info);
    kernex::frame_codec codec(info.key, info.signature_scheme);
    auto session = kernex::new_id();
    auto t0 = steady::now();
    kernex::spawn_options so;
    so.argv = spec.render_argv(file);
    so.env = spec.env;
    so.stdout_mode = kernex::output_mode::null;
    so.stderr_mode = kernex::output_mode::null;
    kernex::child_process kernel_process(so);
    zmq::context_t ctx(1);
    zmq::socket_t shell(ctx, zmq::socket_type::dealer);
    shell.set(zmq::sockopt::linger, 0);
    shell.set(zmq::sockopt::reconnect_ivl, 1);
    shell.set(zmq::sockopt::reconnect_ivl_max, 1);
    shell.connect(info.shell_endpoint());
    double ms = -1;
    while (ms < 0 && steady::now() - t0 < 60s) {
        auto frames = codec.encode(kernex::make_request("kernel_info_request", nlohmann::json::object(), session));
        for (std::size_t f = 0; f < frames.size(); ++f)
            shell.send(zmq::buffer(frames[f]), f + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
        zmq::pollitem_t item{shell.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, std::chrono::milliseconds(2));
        if (item.revents & ZMQ_POLLIN) ms = ms_since(t0);
    }
    if (ms >= 0 && streams > 0 && stream_ms) {
        raw_client raw(info, stream, 0);
        raw.run_once(info, stream);  // warm-up
        for (int i = 0; i < streams; ++i) stream_ms->push_back(raw.run_once(info, stream));
    }
    kernel_process.stop(std::chrono::milliseconds(2000));
    std::filesystem::remove(file);
    return ms;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::cerr << "usage: bench_kernel_client KERNEL_NAME CELL_CODE STREAM_CODE [CELLS] [STARTS] [STREAMS]\n";
        return 2;
    }
    std::string kernel = argv[1], cell = argv[2], stream = argv[3];
    int cells = argc > 4 ? std::stoi(argv[4]) : 200;
    int starts = argc > 5 ? std::stoi(argv[5]) : 5;
    int streams = argc > 6 ? std::stoi(argv[6]) : 5;

    std::vector<double> start_ms, shutdown_ms, cell_ms, raw_ms, bare_start, stream_ms, bare_stream_ms,
        stream_cpu_ms, kernel_stream_cpu_ms;
    std::size_t stream_bytes = 0;
    double cell_cpu_ms = 0, raw_cell_cpu_ms = 0;  // of this thread, over all cells
    for (int s = 0; s < starts; ++s) {
        bare_start.push_back(s == 0 ? bare_start_ms(kernel, stream, streams, &bare_stream_ms) : bare_start_ms(kernel));
        auto t0 = steady::now();
        auto km = kernex::kernel_manager::start({.kernel_name = kernel});
        start_ms.push_back(ms_since(t0));
        auto& kc = km.client();
        if (s == 0) {
            {
                raw_client raw(km.connection(), cell, cells + 10);
                for (int i = 0; i < 10; ++i) {  // warm-up
                    kc.execute(cell);
                    raw.round_trip();
                }
                for (int i = 0; i < cells; ++i) {
                    const double cpu0 = thread_cpu_ms();
                    auto c0 = steady::now();
                    auto r = kc.execute(cell);
                    cell_ms.push_back(ms_since(c0));
                    cell_cpu_ms += thread_cpu_ms() - cpu0;
                    if (r.status != kernex::execution_status::ok) {
                        std::cerr << "cell failed: " << kernex::to_string(r.status) << "\n";
                        return 1;
                    }
                    const double raw_cpu0 = thread_cpu_ms();
                    raw_ms.push_back(raw.round_trip());
                    raw_cell_cpu_ms += thread_cpu_ms() - raw_cpu0;
                }
            }  // the raw client's subscription ends: kernex alone hears the streams
            for (int i = 0; i <= streams; ++i) {  // the first is a warm-up
                std::size_t bytes = 0;
                const double cpu0 = cpu_ms(), kernel_cpu0 = cpu_ms(km.pid());
                auto s0 = steady::now();
                auto r = kc.execute(stream, {.on_output = [&](const kernex::output& o) {
                                                 if (auto* st = std::get_if<kernex::outputs::stream>(&o))
                                                     bytes += st->text.size();
                                             }});
                if (i > 0) {
                    stream_ms.push_back(ms_since(s0));
                    stream_cpu_ms.push_back(cpu_ms() - cpu0);
                    kernel_stream_cpu_ms.push_back(cpu_ms(km.pid()) - kernel_cpu0);
                }
                stream_bytes = bytes;
                if (r.status != kernex::execution_status::ok) return 1;
            }
        }
        auto d0 = steady::now();
        km.shutdown();
        shutdown_ms.push_back(ms_since(d0));
    }
    double mean = std::accumulate(cell_ms.begin(), cell_ms.end(), 0.0) / static_cast<double>(cell_ms.size());
    nlohmann::json out{{"client", "kernex"},
                       {"kernel", kernel},
                       {"start_ms", median(start_ms)},
                       {"bare_start_ms", median(bare_start)},
                       {"cell_ms_mean", mean},
                       {"cell_ms_median", median(cell_ms)},
                       {"raw_zmq_cell_ms_median", median(raw_ms)},
                       {"cell_thread_cpu_ms", cell_cpu_ms / cells},
                       {"raw_zmq_cell_thread_cpu_ms", raw_cell_cpu_ms / cells},
                       {"raw_zmq_cell_ms_mean",
                        std::accumulate(raw_ms.begin(), raw_ms.end(), 0.0) / static_cast<double>(raw_ms.size())},
                       {"stream_ms", median(stream_ms)},
                       {"stream_ms_all", stream_ms},
                       {"bare_stream_ms", median(bare_stream_ms)},
                       {"stream_cpu_ms", median(stream_cpu_ms)},
                       {"kernel_stream_cpu_ms", median(kernel_stream_cpu_ms)},
                       {"stream_bytes", stream_bytes},
                       {"shutdown_ms", median(shutdown_ms)}};
    std::cout << out.dump() << std::endl;
    return 0;
}
