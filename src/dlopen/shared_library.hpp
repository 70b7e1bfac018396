// dlopen: where kernex loads libzmq, libssl and libcrypto. libkernex is not
// linked against them (no DT_NEEDED): a process that never speaks to a
// kernel or over TLS (`kernex --version`, `--help`, `exec` with the local
// executor) never maps them, which saves about 2 ms of every start
// (docs/benchmarks.md, CLI process start). libzmq.cpp, libssl.cpp and
// libcrypto.cpp here define each C function kernex calls (directly, or
// through cppzmq's and Boost.Asio's headers); the first call of one loads
// its library by SONAME and looks the function up, later calls go straight
// to it. The definitions are internal to libkernex.so (src/libkernex.map),
// so they never stand in for the real ones in another library's lookups.
// Internal.
#pragma once

#include <string_view>

namespace kernex::detail {

enum class library { zmq, ssl, crypto };

// The address of function name in the library, loading the library on the
// first use (thread-safe; loaded once, never unloaded). Throws kernex::error
// (errc::not_found) naming the library, what kernex needs it for and the
// package to install, when it cannot be loaded or lacks the function.
void* library_function(library which, const char* name);

// dlopen of soname (RTLD_LAZY | RTLD_LOCAL); throws kernex::error
// (errc::not_found) with the loader's reason and `why` (what it is for and
// how to install it) when it cannot be loaded. For library_function, and
// for the tests (a library that is not there).
void* open_library(const char* soname, std::string_view why);

}  // namespace kernex::detail

// Defines the C function `name` as a call of the same function in library
// `which`: KERNEX_FORWARD(library::zmq, int, zmq_close, (void* s), (s)).
// The header's declaration of `name` must be in scope: a signature that
// differs from it does not compile.
#define KERNEX_FORWARD(which, result, name, params, args)                                                 \
    extern "C" result name params {                                                                        \
        static const auto function =                                                                       \
            reinterpret_cast<decltype(&name)>(::kernex::detail::library_function(which, #name));             \
        return function args;                                                                              \
    }
