// The one ZeroMQ context kernex's sockets share (contexts are thread-safe;
// sockets are not, and each stays with the thread that made it).
#pragma once

#include <zmq.hpp>

namespace kernex {

zmq::context_t& shared_zmq_context();

}  // namespace kernex
