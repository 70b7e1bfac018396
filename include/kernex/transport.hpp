// transport: how kernel_client's messages reach a kernel and come back.
// The request/reply logic lives in kernel_client; a transport only moves
// verified messages on the four message channels (shell, iopub, stdin,
// control) and says when the peer is known to be dead. zmq_transport speaks
// ZeroMQ to a local kernel; the gateway module adds a websocket one.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "kernex/connection.hpp"
#include "kernex/message.hpp"

namespace kernex {

enum class channel : std::uint8_t { shell, iopub, stdin_channel, control };
std::string_view to_string(channel ch) noexcept;

struct incoming {
    kernex::channel channel = channel::shell;
    kernex::message message;
};

enum class receive_status { message, timeout, peer_dead };

class transport {
public:
    virtual ~transport() = default;

    // Sends msg on ch (signing it). Throws kernex::error(io_error) when the
    // transport is closed or broken.
    virtual void send(channel ch, const message& msg) = 0;

    // Waits for the next verified message on any channel until deadline.
    // Returns message (out filled), timeout, or peer_dead (the death fd became
    // readable, the heartbeat failed, or the connection was closed by the
    // peer). Messages that fail verification are dropped and counted; they
    // never end the wait.
    virtual receive_status receive(std::chrono::steady_clock::time_point deadline, incoming& out) = 0;

    // A file descriptor that becomes readable when the kernel is dead (the
    // kernel process's pidfd). -1 to stop watching. The transport does not
    // own it.
    virtual void watch_death_fd(int fd) = 0;

    // Messages dropped because they failed verification, by reason.
    virtual reject_counters rejected() const = 0;

    // Remakes the iopub connection after messages on it were lost (ZeroMQ
    // closes a connection that brings a frame above max_message_bytes, for
    // good). The subscription must then be proven again. Default: nothing.
    virtual void reconnect_iopub() {}

    // Whether the stdin channel's connection is up (its handshake done), so
    // that an input_request the kernel sends now reaches us: a kernel's stdin
    // ROUTER drops a message for a peer it does not know yet, and the cell
    // that asked would wait for an answer forever. Default: true (transports
    // that carry stdin on the same connection as shell).
    virtual bool stdin_connected() { return true; }

    // How many times the iopub connection has come up (its handshake done):
    // a new connection brings our subscription to the kernel, so a status
    // the kernel publishes from then on reaches us, and it is the moment to
    // prove the subscription (kernel_client::wait_for_ready asks again then
    // rather than on a timer). Default: 0, never changing.
    virtual unsigned long iopub_connections() { return 0; }
};

struct zmq_transport_options {
    // Heartbeat period; zero disables the heartbeat (kernels kernex launched
    // are watched through their process instead). A kernel is declared dead
    // when pings get no echo for three periods in a row and its heartbeat
    // endpoint no longer accepts connections (its process is gone): a kernel
    // that echoes only between requests (IRkernel) is busy, not dead.
    std::chrono::milliseconds heartbeat_period{0};
    codec_options codec{};
    // iopub messages ZeroMQ may hold for us while we do not read (ZMQ_RCVHWM;
    // 1000 is ZeroMQ's default and so jupyter_client's); when full, the
    // kernel's side holds or drops them. With max_message_bytes this bounds
    // what a kernel's output can make us queue.
    int iopub_queue_messages = 1000;
};

// A transport over ZeroMQ to the five sockets of a connection file. The
// shell and stdin sockets share the session as their routing identity, as
// kernels expect for input requests.
std::unique_ptr<transport> make_zmq_transport(const connection_info& info, const std::string& session,
                                              zmq_transport_options options = {});

}  // namespace kernex
