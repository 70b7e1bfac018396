#include "kernex/error.hpp"

namespace kernex {

std::string_view to_string(errc code) noexcept {
    switch (code) {
    case errc::invalid_argument: return "invalid_argument";
    case errc::not_found: return "not_found";
    case errc::io_error: return "io_error";
    case errc::protocol_error: return "protocol_error";
    case errc::unsupported: return "unsupported";
    case errc::launch_failed: return "launch_failed";
    case errc::timeout: return "timeout";
    case errc::kernel_died: return "kernel_died";
    case errc::permission_denied: return "permission_denied";
    case errc::docker_error: return "docker_error";
    case errc::gateway_error: return "gateway_error";
    }
    return "unknown";
}

}  // namespace kernex
