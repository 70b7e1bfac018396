// The fields of a message header, in one place for message_header's JSON
// conversions and the wire's direct reading and writing of headers
// (internal to the wire module).
#pragma once

#include <string>
#include <utility>

#include "kernex/message.hpp"

namespace kernex::wire {

// In the order of their names, which is the order nlohmann's objects (a
// std::map) keep and so the order headers were always written in.
inline constexpr std::pair<const char*, std::string message_header::*> header_fields[] = {
    {"date", &message_header::date},         {"msg_id", &message_header::msg_id},
    {"msg_type", &message_header::msg_type}, {"session", &message_header::session},
    {"username", &message_header::username}, {"version", &message_header::version},
};
inline constexpr std::size_t header_field_count = std::size(header_fields);

}  // namespace kernex::wire
