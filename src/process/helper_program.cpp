#include "process/helper_program.hpp"

#include <unistd.h>

#include <cstdlib>

#include "process/install_paths.hpp"

namespace kernex::detail {

std::filesystem::path helper_dir() {
    if (const char* dir = std::getenv("KERNEX_LIBEXEC_DIR"); dir && *dir) return dir;
    return install_libexec_dir;
}

std::filesystem::path helper_program(std::string_view name) {
    const std::filesystem::path path = helper_dir() / name;
    if (::access(path.c_str(), X_OK) != 0) return {};
    return path;
}

}  // namespace kernex::detail
