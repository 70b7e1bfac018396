// libFuzzer target for frame_codec::decode. The input is a multipart message
// with frames separated by '\n' (so seeds stay readable; JSON parts never
// need a raw newline). Each input is decoded by a signed codec (whose seeds
// carry valid signatures, so mutations of unsigned buffers and of the
// signature are explored) and by an unsigned one (which lets mutated JSON
// reach the parser). Beyond "no crash", it checks properties that must hold
// for any input, and traps when one does not:
//  - a rejection sets the reason and counts it; decode never throws;
//  - an accepted signed message is a replay when it comes again;
//  - what was accepted re-encodes and decodes back to the same message.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernex/message.hpp"

namespace {

// Must match FUZZ_KEY in tests/data/make_signatures.py (which writes seeds).
constexpr const char* fuzz_key = "fuzz-key";

std::vector<std::string> split(const std::uint8_t* data, std::size_t size) {
    std::vector<std::string> frames;
    const char* begin = reinterpret_cast<const char*>(data);
    const char* end = begin + size;
    const char* start = begin;
    for (const char* p = begin; p != end; ++p)
        if (*p == '\n') {
            frames.emplace_back(start, p);
            start = p + 1;
        }
    frames.emplace_back(start, end);
    return frames;
}

void require(bool condition) {
    if (!condition) __builtin_trap();
}

bool same(const kernex::message& a, const kernex::message& b) {
    return a.identities == b.identities && a.header.to_json() == b.header.to_json() &&
           a.parent_header.to_json() == b.parent_header.to_json() && a.metadata == b.metadata &&
           a.content == b.content && a.buffers == b.buffers;
}

// Decodes frames, checking that the reason and counters agree with the result.
std::optional<kernex::message> decode(kernex::frame_codec& codec, std::vector<std::string> frames) {
    const std::uint64_t before = codec.rejected().total();
    auto why = static_cast<kernex::reject_reason>(0xff);
    std::optional<kernex::message> m = codec.decode(std::move(frames), &why);
    if (m) {
        require(codec.rejected().total() == before);
        require(!m->msg_type().empty());
        require(m->metadata.is_object() && m->content.is_object());
    } else {
        require(static_cast<std::size_t>(why) < kernex::reject_reason_count);
        require(codec.rejected().total() == before + 1);
    }
    return m;
}

// An accepted message survives a round trip through a fresh codec.
void round_trip(const kernex::message& m, const char* key) {
    kernex::frame_codec codec(key);
    const std::optional<kernex::message> again = decode(codec, codec.encode(m));
    require(again.has_value() && same(*again, m));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Small limits so eviction, the size cap and the depth limit are reached.
    static const kernex::codec_options options{.replay_history = 8, .max_message_bytes = 1 << 16,
                                               .max_json_depth = 64};
    static kernex::frame_codec signed_codec(fuzz_key, "hmac-sha256", options);
    static kernex::frame_codec unsigned_codec("", "hmac-sha256", options);

    const std::vector<std::string> frames = split(data, size);

    if (const auto m = decode(signed_codec, frames)) {
        kernex::reject_reason why{};
        require(!signed_codec.decode(std::vector<std::string>(frames), &why));
        require(why == kernex::reject_reason::replayed);
        round_trip(*m, fuzz_key);
    }
    if (const auto m = decode(unsigned_codec, frames)) round_trip(*m, "");
    return 0;
}
