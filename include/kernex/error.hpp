// kernex::error: the one exception type kernex throws, with a category (errc)
// and a message that tells the user what to do. Outcomes of running code
// (user errors, timeouts, dead kernels) are never exceptions: they are fields
// of the returned results.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace kernex {

enum class errc {
    invalid_argument,   // a bad option, a malformed file, an unknown name
    not_found,          // a kernelspec, file, kernel id or image that does not exist
    io_error,           // a system call failed
    protocol_error,     // a peer broke the Jupyter wire protocol
    unsupported,        // e.g. an unknown signature scheme
    launch_failed,      // a kernel or process did not start
    timeout,            // a setup step (not user code) ran out of time
    kernel_died,        // the kernel died during a setup step
    permission_denied,  // 401/403, or a file mode that is too open
    docker_error,       // the Docker Engine API refused or is unreachable
    gateway_error,      // a Jupyter Server / gateway refused or is unreachable
};

// Returns the lower-case name of an errc ("invalid_argument", ...).
std::string_view to_string(errc code) noexcept;

class error : public std::runtime_error {
public:
    error(errc code, const std::string& what) : std::runtime_error(what), m_code(code) {}
    errc code() const noexcept { return m_code; }

private:
    errc m_code;
};

}  // namespace kernex
