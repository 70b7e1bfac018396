// The websocket transport to a kernel on a Jupyter Server (internal): a
// kernex::transport over /api/kernels/{id}/channels, driven entirely on
// the thread that uses it. The server has already verified the kernel's
// signatures; messages that do not decode are dropped and counted.
//
// Deaths it reports as peer_dead: the server's "restarting" status (it
// restarted the kernel after a crash: once, for the request that was
// waiting), its "dead" status, a kernel the server no longer has (asked over
// REST while the socket is quiet), and a socket that dropped and could not
// be reconnected (one attempt per drop, announced through on_notice).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "gateway/http.hpp"
#include "kernex/transport.hpp"

namespace kernex::gateway_detail {

struct ws_events {
    std::function<void()> restarted;  // the server restarted the kernel after it died
    std::function<void()> dead;       // the kernel is gone for good
};

class ws_transport : public transport {
public:
    // Takes in what has already arrived, without waiting, and forgets
    // restarts reported so far: a kernel restarted while no request was
    // waiting does not fail the next one. Reconnects a socket found closed.
    virtual void settle() = 0;
    virtual void set_events(ws_events events) = 0;
    // Why the kernel is known dead, empty while it is not.
    virtual const std::string& dead_reason() const noexcept = 0;
};

// Opens the websocket (session_id = session) by deadline. Throws like the
// REST calls: not_found (no such kernel), permission_denied, gateway_error, timeout.
std::unique_ptr<ws_transport> open_websocket(std::shared_ptr<const endpoint> ep, const std::string& kernel_id,
                                             const std::string& session, steady::time_point deadline);

}  // namespace kernex::gateway_detail
