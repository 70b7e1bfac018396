// Jupyter messages on a kernel websocket, in the server's default ("legacy")
// JSON protocol (internal to the gateway module). A text frame is one JSON
// object: the message's header, parent_header, metadata, content and its
// "channel". A message with binary buffers travels as a binary frame:
//   u32 n (big-endian), n u32 offsets from the frame's start, then the JSON
//   object followed by n-1 buffers, each starting at its offset.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "kernex/message.hpp"
#include "kernex/transport.hpp"

namespace kernex::gateway_detail {

// The channel named name ("shell", "iopub", "stdin", "control"), or nullopt.
std::optional<channel> channel_named(std::string_view name) noexcept;

// Decodes one websocket message. Returns nullopt with why set for anything
// malformed (oversized, truncated binary offsets, bad JSON, a missing or
// unknown channel, a header without msg_type); never throws. The server
// has verified the kernel's signature: there is none here.
std::optional<incoming> decode_ws_message(std::string_view data, bool binary, const codec_options& options,
                                          reject_reason& why) noexcept;

struct ws_payload {
    std::string data;
    bool binary = false;
};

// Encodes msg for ch: text JSON, or the binary form when it has buffers.
// Throws kernex::error(invalid_argument) for JSON that cannot be serialised
// (invalid UTF-8 in a string).
ws_payload encode_ws_message(channel ch, const message& msg);

}  // namespace kernex::gateway_detail
