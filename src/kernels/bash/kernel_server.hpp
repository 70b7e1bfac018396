// kernex-bash's xeus server: xeus's threaded server, shell requests on the
// main thread and control requests on a thread of their own (as xeus-python
// runs), so interrupt_request, kernel_info_request and shutdown_request are
// answered while a cell runs instead of after it.
#pragma once

#include <xeus/xeus_context.hpp>
#include <xeus/xkernel_configuration.hpp>
#include <xeus/xserver.hpp>

#include <memory>

namespace kernex::bash {

// A server_builder for xeus::xkernel. Throws what xeus throws when a socket
// cannot be bound.
std::unique_ptr<xeus::xserver> make_kernel_server(xeus::xcontext& context,
                                                  const xeus::xconfiguration& config,
                                                  nl::json::error_handler_t error_handler);

}  // namespace kernex::bash
