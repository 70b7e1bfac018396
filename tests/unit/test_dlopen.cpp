// src/dlopen: libzmq, libssl and libcrypto loaded on first use. A library
// that cannot be loaded, or lacks a function, is a kernex::error that names
// it; a function found is the library's own.
#include <doctest/doctest.h>

#include <string>

#include "dlopen/shared_library.hpp"
#include "kernex/error.hpp"

using kernex::detail::library;
using kernex::detail::library_function;
using kernex::detail::open_library;

TEST_CASE("a library that is not there is an error naming it and what it is for") {
    try {
        open_library("libkernex-no-such-library.so.0", "a test's (apt-get install nothing)");
        FAIL("loaded a library that does not exist");
    } catch (const kernex::error& e) {
        CHECK(e.code() == kernex::errc::not_found);
        const std::string what = e.what();
        CHECK(what.find("cannot load libkernex-no-such-library.so.0 (a test's (apt-get install nothing)): ") == 0);
        CHECK(what.find("No such file") != std::string::npos);
    }
}

TEST_CASE("functions are the libraries' own") {
    using version_fn = void (*)(int*, int*, int*);
    auto zmq_version = reinterpret_cast<version_fn>(library_function(library::zmq, "zmq_version"));
    int major = 0, minor = 0, patch = 0;
    zmq_version(&major, &minor, &patch);
    CHECK(major == 4);
    using openssl_version_fn = unsigned long (*)();
    CHECK(reinterpret_cast<openssl_version_fn>(library_function(library::crypto, "OpenSSL_version_num"))() >=
          0x30000000UL);
    CHECK(library_function(library::ssl, "SSL_new") != nullptr);
}

TEST_CASE("a function the library lacks is an error naming both") {
    try {
        library_function(library::zmq, "zmq_no_such_function");
        FAIL("found a function that does not exist");
    } catch (const kernex::error& e) {
        CHECK(e.code() == kernex::errc::not_found);
        CHECK(std::string(e.what()) == "libzmq.so.5 has no function zmq_no_such_function: kernex was built against "
                                       "another version of it");
    }
}
