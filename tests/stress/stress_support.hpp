// What the stress programs share: the size of a run (bounded for CI, full
// with KERNEX_STRESS_FULL=1), the kernels they drive, and printing figures
// in one greppable form ("[stress] name: value") so they can be quoted.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "kernex/kernel_manager.hpp"

#include "../helpers/test_support.hpp"

namespace kernex::stress {

// Whether this is the full-size run (KERNEX_STRESS_FULL=1).
inline bool full_size() {
    const char* v = std::getenv("KERNEX_STRESS_FULL");
    return v && *v && std::string_view(v) != "0";
}

// Whether kernex-bash was built (the build sets KERNEX_STRESS_NO_BASH when
// bash_kernel was explicitly disabled; then the test kernel stands in).
inline bool with_bash() { return std::getenv("KERNEX_STRESS_NO_BASH") == nullptr; }

// bounded in CI, full with KERNEX_STRESS_FULL=1.
inline int scaled(int bounded, int full) { return full_size() ? full : bounded; }

template <class... Args>
void figure(const char* name, const char* format, Args... args) {
    std::printf("[stress] %s: ", name);
    std::printf(format, args...);
    std::printf("\n");
    std::fflush(stdout);
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A field of /proc/PID/status in kB (VmRSS of a kernel process); -1 when gone.
inline long process_status_kb(int pid, const std::string& field) {
    const std::string status = test::read_file("/proc/" + std::to_string(pid) + "/status");
    const auto at = status.find("\n" + field + ":");
    return at == std::string::npos ? -1 : std::atol(status.c_str() + at + field.size() + 2);
}

inline kernel_options kernel(std::string name) {
    kernel_options o;
    o.kernel_name = std::move(name);
    o.ready_timeout = std::chrono::seconds(120);  // 100 kernels starting at once on 2 cores
    return o;
}

}  // namespace kernex::stress
