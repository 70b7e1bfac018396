// Connection files: how a client finds a kernel's five sockets and its key.
// Same JSON format as jupyter_client (shell_port, iopub_port, stdin_port,
// control_port, hb_port, ip, key, transport, signature_scheme, kernel_name).
// Files are written 0600 from creation; keys are 32 random bytes from
// OpenSSL's RNG, as hex. Transports: tcp (free ports are allocated here) and
// ipc (ZeroMQ unix sockets "ipc://<ip>-<port>").
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kernex {

struct connection_info {
    std::string transport = "tcp";  // "tcp" or "ipc"
    std::string ip = "127.0.0.1";   // for ipc: the socket path prefix
    std::uint16_t shell_port = 0;
    std::uint16_t iopub_port = 0;
    std::uint16_t stdin_port = 0;
    std::uint16_t control_port = 0;
    std::uint16_t hb_port = 0;
    std::string key{};
    std::string signature_scheme = "hmac-sha256";
    std::string kernel_name{};

    // "tcp://127.0.0.1:5555", "tcp://[::1]:5555" or "ipc:///path/kernel-3"
    std::string endpoint(std::uint16_t port) const;
    std::string shell_endpoint() const { return endpoint(shell_port); }
    std::string iopub_endpoint() const { return endpoint(iopub_port); }
    std::string stdin_endpoint() const { return endpoint(stdin_port); }
    std::string control_endpoint() const { return endpoint(control_port); }
    std::string hb_endpoint() const { return endpoint(hb_port); }

    nlohmann::json to_json() const;
    // Required: the five ports (integers 1-65535: a file says where a kernel
    // listens, so port 0 is rejected), ip (non-empty string), key (string,
    // may be empty: unsigned messages), transport ("tcp" or "ipc", any case).
    // Optional, as in files older clients wrote: signature_scheme (default
    // hmac-sha256), kernel_name (default ""). Unknown fields are ignored.
    // Throws kernex::error(invalid_argument) naming `source` (a file name) and
    // the missing or bad field.
    static connection_info from_json(const nlohmann::json& j, const std::string& source = "connection info");
};

// Reads and validates a connection file. Throws kernex::error(not_found) when
// missing, (invalid_argument) on bad JSON or a bad field, naming the file,
// (io_error) when it cannot be read.
connection_info read_connection_file(const std::filesystem::path& path);

// Writes info to path with mode 0600 from creation (never world-readable),
// atomically (temp file + fsync + rename in the same directory), in
// jupyter_client's field order. Creates missing parent directories with mode
// 0700 (existing ones are left as they are). Throws kernex::error
// (invalid_argument) when info would not read back (a port 0, an unknown
// transport, an empty ip), (io_error) when a system call fails.
void write_connection_file(const std::filesystem::path& path, const connection_info& info);

// 32 random bytes from OpenSSL's RNG as 64 lower-case hex characters.
// Throws kernex::error(io_error) when the RNG fails.
std::string random_key();

// Returns info with a fresh key and five distinct ports. For tcp the ports are
// free on info.ip now and not handed out by this process recently (so
// concurrent launches in one process never collide); for ipc, numbers whose
// socket files "<ip>-<n>" do not exist and were not handed out recently. For
// ipc, an empty ip or the tcp default "127.0.0.1" is replaced by
// <jupyter_runtime_dir()>/kernel-ipc (the directory is created, 0700).
// Throws kernex::error(io_error), (invalid_argument) for an unknown transport
// or an ip that is not an address of this host.
connection_info allocate_ports(connection_info info);

// Jupyter's runtime dir: $JUPYTER_RUNTIME_DIR, else <jupyter_data_dir()>/runtime
// (see kernelspec.hpp: $JUPYTER_DATA_DIR, else $XDG_DATA_HOME/jupyter, else
// ~/.local/share/jupyter). Empty variables count as unset, as in jupyter_core.
std::filesystem::path jupyter_runtime_dir();

// A connection file as `jupyter console --existing NAME` finds it
// (jupyter_client's find_connection_file): NAME itself when it exists, else
// <jupyter_runtime_dir()>/NAME, else the one *.json file there whose name
// contains NAME (so `kernel-ID.json`, `kernel-ID` or `ID`; `kernex kernel
// start`'s records, kernex-kernel-*.json, are not connection files). Throws
// kernex::error(not_found) when nothing matches, (invalid_argument) when
// several do (listing them) or NAME is empty.
std::filesystem::path find_connection_file(const std::string& name);

}  // namespace kernex
