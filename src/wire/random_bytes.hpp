// Random bytes for keys and message ids, from the kernel's generator
// (getrandom(2)) rather than OpenSSL's RAND_bytes: the first RAND_bytes of a
// process costs about 1.2 ms (OpenSSL reads its configuration file and
// loads its providers), which every kernel start and every CLI call paid
// (docs/benchmarks.md, CLI process start). Internal to the library.
#pragma once

#include <sys/random.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "kernex/error.hpp"

namespace kernex::detail {

// Fills [out, out + size) with bytes from the kernel's CSPRNG (blocking only
// until it is first seeded, at boot); `what` names the purpose in the error.
inline void random_bytes(void* out, std::size_t size, const char* what) {
    auto* p = static_cast<unsigned char*>(out);
    while (size > 0) {
        const ssize_t n = ::getrandom(p, size, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw error(errc::io_error, std::string("the kernel's random generator (getrandom) failed to make ") +
                                            what + ": " + std::strerror(errno));
        }
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

}  // namespace kernex::detail
