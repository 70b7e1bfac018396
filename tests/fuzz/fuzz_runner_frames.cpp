// libFuzzer target for kernex's decoder of what the resident runner sends
// (src/runner/runner_codec.cpp): the runner's stdout is reachable only by
// the runner, but kernex treats it as hostile all the same. The first byte
// of the input chooses how the rest is cut into pieces; the rest is the
// stream. Beyond "no crash", it traps when a property that must hold for any
// input does not:
//  - a frame handed on is of a type the runner sends, with a payload no
//    larger than its type allows, and the payloads never add up to more than
//    the bytes fed;
//  - once broken, the decoder stays broken and hands on nothing more;
//  - the bytes it keeps stay bounded (one frame and what came with it);
//  - the stream cut into pieces gives the same frames and outcome as whole;
//  - every exit payload either parses to values in range or is refused;
//  - a done payload ('D', the answer to a file write or a pack) parses when
//    it holds its fixed fields with a valid ok byte, and only then.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runner/runner_client.hpp"

namespace {

namespace proto = kernex::runner_protocol;

void require(bool condition) {
    if (!condition) __builtin_trap();
}

struct outcome {
    std::vector<kernex::detail::runner_frame> frames;
    bool broken = false;
};

outcome decode(std::string_view stream, std::size_t piece) {
    kernex::detail::runner_frame_decoder decoder;
    outcome out;
    std::size_t payload_bytes = 0;
    for (std::size_t at = 0; at < stream.size(); at += piece) {
        const bool accepted = decoder.feed(stream.substr(at, piece));
        require(accepted == !out.broken);
        while (auto f = decoder.next()) {
            require(!out.broken);
            require(f->type == proto::hello || f->type == proto::out || f->type == proto::err ||
                    f->type == proto::exit || f->type == proto::tar || f->type == proto::done);
            if (f->type != proto::out && f->type != proto::err && f->type != proto::tar)
                require(f->payload.size() <= 4096);
            require(f->payload.size() <= proto::chunk_size);
            payload_bytes += f->payload.size() + proto::header_size;
            require(payload_bytes <= stream.size());
            if (f->type == proto::exit) {
                if (auto x = kernex::detail::parse_runner_exit(f->payload)) {
                    require(static_cast<int>(x->how) <= static_cast<int>(proto::exit_how::not_started));
                    require(x->message.size() + 6 == f->payload.size());
                }
            }
            if (f->type == proto::done) {
                if (auto d = kernex::detail::parse_runner_done(f->payload)) require(d->message.size() + 13 == f->payload.size());
                else require(f->payload.size() < 13 || static_cast<unsigned char>(f->payload[0]) > 1);
            }
            out.frames.push_back(std::move(*f));
        }
        if (decoder.broken()) {
            require(!decoder.why().empty());
            out.broken = true;
        }
        // What is kept waits for at most one frame (header and largest payload) plus one piece.
        require(decoder.pending() <= proto::header_size + proto::chunk_size + piece);
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t piece = 1 + data[0] % 64;
    const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
    const outcome whole = decode(stream, stream.size() + 1);
    const outcome cut = decode(stream, piece);
    require(whole.broken == cut.broken);
    require(whole.frames.size() == cut.frames.size());
    for (std::size_t i = 0; i < whole.frames.size() && i < cut.frames.size(); ++i) {
        require(whole.frames[i].type == cut.frames[i].type);
        require(whole.frames[i].payload == cut.frames[i].payload);
    }
    return 0;
}
