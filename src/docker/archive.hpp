// docker/archive: the tar streams of the Engine API's archive endpoint
// (PUT/GET /containers/{id}/archive), which carry files to and from a
// container when its daemon is on another machine and a bind mount would
// name the wrong disk. Writing: ustar entries built in memory. Reading: a
// tar the container's code shaped (every name, type and size in it is the
// attacker's), unpacked beneath a directory fd through confine's one way of
// creating files: only regular files and directories; links, devices, FIFOs,
// absolute or ".." names refused and reported; a byte cap. Internal.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kernex::docker {

// One entry of a tar to send: a directory (name ends without '/', is_dir)
// or a regular file with its bytes.
struct tar_entry {
    std::string name;  // relative, '/'-separated
    bool is_dir = false;
    mode_t mode = 0600;
    unsigned uid = 0, gid = 0;
    std::string content;
};

// The tar stream (ustar, a PAX header for names over 100 bytes) of entries.
// Throws kernex::error(invalid_argument) for a name that is empty, absolute or has "..".
std::string make_tar(const std::vector<tar_entry>& entries);

// What unpack_beneath did.
struct unpack_report {
    std::vector<std::string> written;   // files made or replaced (unchanged ones are not rewritten)
    std::vector<std::string> refused;   // "name: why", one per entry not taken
    std::uint64_t dropped_bytes = 0;    // file bytes left out by the cap
};

// Unpacks tar beneath dir_fd: the first path component (the archived dir's
// own name, as GET archive sends it) is stripped; directories made as
// needed (0700), regular files replaced when their bytes changed (mode
// 0600, or 0700 when the entry was executable); a hard link to a file
// taken before becomes a copy of its bytes. Everything else — symlinks, devices, FIFOs, names absolute or with "..", a name where a
// symlink or a non-directory stands on the way — is refused and reported,
// never followed. Files past max_bytes (their sizes summed in tar order)
// are left out and counted. Throws kernex::error(protocol_error) for a
// stream that is not a tar (truncated, a bad checksum); the files before
// the bad part are then written already.
unpack_report unpack_beneath(int dir_fd, std::string_view tar, std::uint64_t max_bytes);

}  // namespace kernex::docker
