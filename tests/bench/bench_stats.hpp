// Summary statistics the benchmarks print: percentiles and means of timings.
// (bench_local_executor and bench_gateway still carry their own copies.)
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace kernex::bench {

// One way of doing the thing measured, and its timings (microseconds).
struct method {
    std::string name;
    std::function<void()> run_once;
    std::vector<double> micros;
};

// The p-th quantile (0..1) of v, nearest rank below; v must not be empty.
inline double percentile(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

inline double mean(const std::vector<double>& v) {
    double sum = 0;
    for (double x : v) sum += x;
    return sum / static_cast<double>(v.size());
}

}  // namespace kernex::bench
