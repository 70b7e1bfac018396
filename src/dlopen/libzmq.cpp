// The ZeroMQ functions kernex calls (directly and through cppzmq), loaded
// from libzmq on the first call: see shared_library.hpp.
#include <zmq.h>

#include "dlopen/shared_library.hpp"

// At global scope: these are the C functions themselves.
using kernex::detail::library;

KERNEX_FORWARD(library::zmq, int, zmq_close, (void* s), (s))
KERNEX_FORWARD(library::zmq, int, zmq_connect, (void* s, const char* addr), (s, addr))
KERNEX_FORWARD(library::zmq, void*, zmq_ctx_new, (), ())
KERNEX_FORWARD(library::zmq, int, zmq_getsockopt, (void* s, int option, void* optval, size_t* optvallen), (s, option, optval, optvallen))
KERNEX_FORWARD(library::zmq, int, zmq_ctx_set, (void* context, int option, int optval), (context, option, optval))
KERNEX_FORWARD(library::zmq, int, zmq_disconnect, (void* s, const char* addr), (s, addr))
KERNEX_FORWARD(library::zmq, int, zmq_errno, (), ())
KERNEX_FORWARD(library::zmq, int, zmq_msg_close, (zmq_msg_t* msg), (msg))
KERNEX_FORWARD(library::zmq, void*, zmq_msg_data, (zmq_msg_t* msg), (msg))
KERNEX_FORWARD(library::zmq, int, zmq_msg_init, (zmq_msg_t* msg), (msg))
KERNEX_FORWARD(library::zmq, int, zmq_msg_more, (const zmq_msg_t* msg), (msg))
KERNEX_FORWARD(library::zmq, int, zmq_msg_recv, (zmq_msg_t* msg, void* s, int flags), (msg, s, flags))
KERNEX_FORWARD(library::zmq, size_t, zmq_msg_size, (const zmq_msg_t* msg), (msg))
KERNEX_FORWARD(library::zmq, int, zmq_poll, (zmq_pollitem_t* items, int nitems, long timeout), (items, nitems, timeout))
KERNEX_FORWARD(library::zmq, int, zmq_send, (void* s, const void* buf, size_t len, int flags), (s, buf, len, flags))
KERNEX_FORWARD(library::zmq, int, zmq_setsockopt, (void* s, int option, const void* optval, size_t optvallen), (s, option, optval, optvallen))
KERNEX_FORWARD(library::zmq, void*, zmq_socket, (void* context, int type), (context, type))
KERNEX_FORWARD(library::zmq, int, zmq_socket_monitor, (void* s, const char* addr, int events), (s, addr, events))
KERNEX_FORWARD(library::zmq, const char*, zmq_strerror, (int errnum), (errnum))
