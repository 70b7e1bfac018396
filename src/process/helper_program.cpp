#include "process/helper_program.hpp"

#include <unistd.h>

#include <cstdlib>

#include "process/install_paths.hpp"

namespace kernex::detail {

std::filesystem::path helper_dir() {
    // Absolute: a helper may be started in another directory (kernex-keeper
    // is spawned with its cwd at /), where a relative $KERNEX_LIBEXEC_DIR
    // would name nothing and the exec fail after access() said yes.
    if (const char* dir = std::getenv("KERNEX_LIBEXEC_DIR"); dir && *dir) {
        std::error_code ec;
        std::filesystem::path absolute = std::filesystem::absolute(dir, ec);
        return ec ? std::filesystem::path(dir) : absolute;
    }
    return install_libexec_dir;
}

std::filesystem::path helper_program(std::string_view name) {
    const std::filesystem::path path = helper_dir() / name;
    if (::access(path.c_str(), X_OK) != 0) return {};
    return path;
}

}  // namespace kernex::detail
