// sandbox: the options of the bubblewrap sandbox that the local executor
// (local_executor_options::sandbox) and local kernels
// (kernel_options::sandbox) can run code in. Inside it code sees the host's
// /usr, /bin, /lib*, /etc (its secrets: shadow, gshadow, ssh host keys,
// private TLS keys covered by empty ones) read-only, its work dir
// read-write, a private /tmp and /dev, no network, no host processes (own pid namespace), no host home;
// it dies with kernex. Needs Debian's `bwrap` (package bubblewrap) and user
// namespaces (or root); without them kernex refuses with a message that
// says how to enable them, never falling back to running unconfined.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

namespace kernex {

struct sandbox_options {
    // Resource limits of everything a block (or a kernel) runs (soft = hard), unset: the host's.
    std::optional<std::uint64_t> cpu_seconds{};    // RLIMIT_CPU, per process
    std::optional<std::uint64_t> address_space{};  // RLIMIT_AS, bytes per process
    std::optional<std::uint64_t> file_size{};      // RLIMIT_FSIZE, bytes per file written
    std::optional<std::uint64_t> open_files{};     // RLIMIT_NOFILE
    // RLIMIT_NPROC: processes of the user, counted over the whole host (the
    // kernel counts per user, not per sandbox); root is exempt from it.
    std::optional<std::uint64_t> processes{};
    // More host directories visible read-only inside (a virtualenv outside /usr, say).
    std::vector<std::filesystem::path> read_only{};
    // The local executor: one sandbox for the executor's session, whose pid 1
    // is kernex's resident runner (it runs each block in its own process
    // group, kills everything the block started after it, and empties /tmp),
    // instead of a bwrap per block. Blocks are confined the same way either
    // way; false pays a sandbox start per block.
    bool resident_runner = true;
};

}  // namespace kernex
