// The transport interface's shared parts: channel names. Kept apart from the
// ZeroMQ and websocket transports so either can be built without the other.
#include "kernex/transport.hpp"

namespace kernex {

std::string_view to_string(channel ch) noexcept {
    switch (ch) {
    case channel::shell: return "shell";
    case channel::iopub: return "iopub";
    case channel::stdin_channel: return "stdin";
    case channel::control: return "control";
    }
    return "unknown";
}

}  // namespace kernex
