#include "connection/private_dirs.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "kernex/error.hpp"

namespace fs = std::filesystem;

namespace kernex {

void create_private_dirs(const fs::path& dir) {
    fs::path partial;
    for (const fs::path& part : dir) {
        partial /= part;
        std::error_code ec;
        if (fs::is_directory(partial, ec)) continue;
        if (::mkdir(partial.c_str(), 0700) != 0) {
            int err = errno;
            // Another process may have created it since we looked.
            if (err == EEXIST && fs::is_directory(partial, ec)) continue;
            throw error(errc::io_error, "cannot create directory " + partial.string() + ": " + std::strerror(err));
        }
        // mkdir's mode is filtered by the umask; a umask such as 0277 would
        // leave a directory its owner cannot write into.
        if (::chmod(partial.c_str(), 0700) != 0)
            throw error(errc::io_error,
                        "cannot set mode 0700 on " + partial.string() + ": " + std::strerror(errno));
    }
}

}  // namespace kernex
