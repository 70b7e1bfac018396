#include "dlopen/shared_library.hpp"

#include <dlfcn.h>

#include <openssl/opensslv.h>
#include <zmq.h>

#include <string>

#include "kernex/error.hpp"

namespace kernex::detail {

namespace {

// The SONAMEs of the ABI whose headers kernex is compiled against.
static_assert(ZMQ_VERSION_MAJOR == 4, "libzmq 4.x is libzmq.so.5: say the SONAME of this version here");
constexpr const char* zmq_soname = "libzmq.so.5";
constexpr const char* ssl_soname = "libssl.so." OPENSSL_MSTR(OPENSSL_SHLIB_VERSION);
constexpr const char* crypto_soname = "libcrypto.so." OPENSSL_MSTR(OPENSSL_SHLIB_VERSION);

void* handle_of(library which) {
    switch (which) {
    case library::zmq: {
        static void* const handle = open_library(
            zmq_soname, "ZeroMQ, which Jupyter kernels' wire protocol needs (Debian: apt-get install libzmq5)");
        return handle;
    }
    case library::ssl: {
        static void* const handle =
            open_library(ssl_soname, "OpenSSL's TLS, which https and Docker over TLS need (Debian: apt-get install libssl3)");
        return handle;
    }
    case library::crypto: {
        static void* const handle = open_library(
            crypto_soname,
            "OpenSSL's libcrypto, which message signing and TLS need (Debian: apt-get install libssl3)");
        return handle;
    }
    }
    return nullptr;
}

const char* soname_of(library which) noexcept {
    switch (which) {
    case library::zmq: return zmq_soname;
    case library::ssl: return ssl_soname;
    case library::crypto: return crypto_soname;
    }
    return "";
}

}  // namespace

void* open_library(const char* soname, std::string_view why) {
    void* handle = ::dlopen(soname, RTLD_LAZY | RTLD_LOCAL);
    if (!handle) {
        const char* reason = ::dlerror();
        throw error(errc::not_found, std::string("cannot load ") + soname + " (" + std::string(why) +
                                         "): " + (reason ? reason : "dlopen failed"));
    }
    return handle;
}

void* library_function(library which, const char* name) {
    void* handle = handle_of(which);
    ::dlerror();
    void* function = ::dlsym(handle, name);
    if (!function)
        throw error(errc::not_found, std::string(soname_of(which)) + " has no function " + name +
                                         ": kernex was built against another version of it");
    return function;
}

}  // namespace kernex::detail
