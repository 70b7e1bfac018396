// The framing of an attached, non-TTY exec or attach stream: each frame is an
// 8-byte header [stream, 0, 0, 0, size as big-endian uint32] and size bytes
// of payload. The demultiplexer is fed bytes as they arrive, in pieces of any
// size, and hands on payload as it comes: a frame is never buffered whole, so
// a peer's size field cannot make it allocate (internal to the docker module).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

#include "kernex/docker_client.hpp"

namespace kernex::docker {

class exec_stream_demuxer {
public:
    using sink = std::function<void(docker_stream, std::string_view)>;

    // Hands each piece of payload in bytes to out (empty frames give no call).
    // Throws kernex::error(protocol_error) on a header that is not one (an
    // unknown stream, non-zero padding), and again on every later call.
    void feed(std::string_view bytes, const sink& out);

    // True between frames, where a stream may end cleanly.
    bool at_frame_boundary() const noexcept { return m_header_fill == 0 && m_left == 0; }
    // Whole headers read so far.
    std::uint64_t frames() const noexcept { return m_frames; }

private:
    unsigned char m_header[8] = {};
    std::size_t m_header_fill = 0;
    std::uint32_t m_left = 0;  // payload bytes of the current frame still to come
    docker_stream m_stream = docker_stream::standard_output;
    std::uint64_t m_frames = 0;
    bool m_broken = false;
};

}  // namespace kernex::docker
