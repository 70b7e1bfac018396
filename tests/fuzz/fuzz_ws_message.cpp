// libFuzzer target for kernel websocket message decoding (the gateway's
// transport). The first byte's low bit says whether the rest arrives as a
// binary frame (offsets + JSON + buffers) or a text frame. Beyond "no crash"
// (decode is noexcept: an escaping exception would terminate), it traps when
// a property that must hold for any input does not:
//  - a rejected message always names a reason, an accepted one never
//    exceeds the size limit;
//  - an accepted message encodes again (or is refused with
//    kernex::error(invalid_argument) only), and decoding that encoding gives
//    the same channel, msg_type, content, metadata and buffers.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gateway/ws_codec.hpp"
#include "kernex/error.hpp"

namespace {

void require(bool condition) {
    if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace kernex;
    using namespace kernex::gateway_detail;
    if (size == 0) return 0;
    const bool binary = data[0] & 1;
    const std::string_view frame(reinterpret_cast<const char*>(data) + 1, size - 1);
    codec_options options;
    options.max_message_bytes = 1 << 16;  // small, so the limit itself is exercised
    options.max_json_depth = 16;

    constexpr auto unset = static_cast<reject_reason>(0xff);
    reject_reason why = unset;
    auto decoded = decode_ws_message(frame, binary, options, why);
    if (!decoded) {
        require(why != unset);
        return 0;
    }
    require(why == unset);
    require(frame.size() <= options.max_message_bytes);

    ws_payload again;
    try {
        again = encode_ws_message(decoded->channel, decoded->message);
    } catch (const kernex::error& e) {
        require(e.code() == errc::invalid_argument);
        return 0;
    }
    require(again.binary == !decoded->message.buffers.empty());
    codec_options roomy = options;
    roomy.max_message_bytes = again.data.size() + 1;
    roomy.max_json_depth = options.max_json_depth + 2;  // the envelope adds a level
    auto round = decode_ws_message(again.data, again.binary, roomy, why);
    require(round.has_value());
    require(round->channel == decoded->channel);
    require(round->message.header.msg_type == decoded->message.header.msg_type);
    require(round->message.content == decoded->message.content);
    require(round->message.metadata == decoded->message.metadata);
    require(round->message.buffers == decoded->message.buffers);
    return 0;
}
