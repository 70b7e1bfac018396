// Benchmark: kernex's kernel_manager + kernel_client on a kernel, printed as
// one JSON object (run_kernel_bench.py puts it beside jupyter_client's).
//   bench_kernel_client KERNEL_NAME CELL_CODE STREAM_CODE [CELLS] [STARTS]
// Measures start-to-ready, per-cell round trip (reply and iopub idle), a
// streaming cell (time until all its output arrived), and shutdown.
#include <algorithm>
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
        return ms_since(t0);
    }

private:
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
// adds (its ready also proves the iopub subscription).
double bare_start_ms(const std::string& kernel) {
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
    kernel_process.stop(std::chrono::milliseconds(2000));
    std::filesystem::remove(file);
    return ms;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::cerr << "usage: bench_kernel_client KERNEL_NAME CELL_CODE STREAM_CODE [CELLS] [STARTS]\n";
        return 2;
    }
    std::string kernel = argv[1], cell = argv[2], stream = argv[3];
    int cells = argc > 4 ? std::stoi(argv[4]) : 200;
    int starts = argc > 5 ? std::stoi(argv[5]) : 5;

    std::vector<double> start_ms, shutdown_ms, cell_ms, raw_ms, bare_start;
    double stream_ms = 0;
    std::size_t stream_bytes = 0;
    for (int s = 0; s < starts; ++s) {
        bare_start.push_back(bare_start_ms(kernel));
        auto t0 = steady::now();
        auto km = kernex::kernel_manager::start({.kernel_name = kernel});
        start_ms.push_back(ms_since(t0));
        auto& kc = km.client();
        if (s == 0) {
            raw_client raw(km.connection(), cell, cells + 10);
            for (int i = 0; i < 10; ++i) {  // warm-up
                kc.execute(cell);
                raw.round_trip();
            }
            for (int i = 0; i < cells; ++i) {
                auto c0 = steady::now();
                auto r = kc.execute(cell);
                cell_ms.push_back(ms_since(c0));
                if (r.status != kernex::execution_status::ok) {
                    std::cerr << "cell failed: " << kernex::to_string(r.status) << "\n";
                    return 1;
                }
                raw_ms.push_back(raw.round_trip());
            }
            auto s0 = steady::now();
            auto r = kc.execute(stream, {.on_output = [&](const kernex::output& o) {
                                             if (auto* st = std::get_if<kernex::outputs::stream>(&o))
                                                 stream_bytes += st->text.size();
                                         }});
            stream_ms = ms_since(s0);
            if (r.status != kernex::execution_status::ok) return 1;
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
                       {"raw_zmq_cell_ms_mean",
                        std::accumulate(raw_ms.begin(), raw_ms.end(), 0.0) / static_cast<double>(raw_ms.size())},
                       {"stream_ms", stream_ms},
                       {"stream_bytes", stream_bytes},
                       {"shutdown_ms", median(shutdown_ms)}};
    std::cout << out.dump() << std::endl;
    return 0;
}
