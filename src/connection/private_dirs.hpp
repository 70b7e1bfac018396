// Directories that hold secrets (connection files, ipc sockets) are created
// readable by their owner only.
#pragma once

#include <filesystem>

namespace kernex {

// Creates each missing directory of dir with mode 0700, whatever the umask;
// directories that already exist are left as they are. Throws
// kernex::error(io_error).
void create_private_dirs(const std::filesystem::path& dir);

}  // namespace kernex
