// libFuzzer target for the Docker exec stream demultiplexer. The first byte
// of the input chooses how the rest is cut into pieces (the demultiplexer
// meets reads of any size); the rest is the stream. Beyond "no crash", it
// traps when a property that must hold for any input does not:
//  - the only exception is kernex::error(protocol_error), and once thrown it
//    is thrown again for any later input;
//  - payload handed on is never empty, never more than the bytes fed, and
//    only for streams 0-3;
//  - the stream cut into pieces gives the same output, in the same order,
//    and the same outcome as the stream fed whole.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "docker/exec_stream.hpp"
#include "kernex/error.hpp"

namespace {

void require(bool condition) {
    if (!condition) __builtin_trap();
}

struct outcome {
    // Runs of one stream's output, consecutive pieces of a stream merged.
    std::vector<std::pair<unsigned, std::string>> runs;
    std::size_t bytes = 0;
    bool failed = false;
    bool boundary = false;
};

outcome demux(std::string_view stream, std::size_t piece) {
    kernex::docker::exec_stream_demuxer demuxer;
    outcome out;
    const auto sink = [&](kernex::docker_stream s, std::string_view data) {
        const auto id = static_cast<unsigned>(s);
        require(id <= 3);
        require(!data.empty());
        out.bytes += data.size();
        if (out.runs.empty() || out.runs.back().first != id) out.runs.emplace_back(id, std::string());
        out.runs.back().second += data;
    };
    try {
        for (std::size_t fed = 0; fed < stream.size(); fed += piece) demuxer.feed(stream.substr(fed, piece), sink);
    } catch (const kernex::error& e) {
        require(e.code() == kernex::errc::protocol_error);
        out.failed = true;
        bool again = false;
        try {
            demuxer.feed(std::string_view("\x01\0\0\0\0\0\0\x01x", 9), sink);
        } catch (const kernex::error&) {
            again = true;
        }
        require(again);
    }
    out.boundary = demuxer.at_frame_boundary();
    require(out.bytes <= stream.size());
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t piece = 1 + data[0] % 17;
    const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
    const outcome cut = demux(stream, piece);
    const outcome whole = demux(stream, stream.size() + 1);
    require(cut.failed == whole.failed);
    if (!cut.failed) {
        require(cut.runs == whole.runs);
        require(cut.boundary == whole.boundary);
    }
    return 0;
}
