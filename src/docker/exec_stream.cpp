#include "docker/exec_stream.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

#include "kernex/error.hpp"

namespace kernex::docker {

void exec_stream_demuxer::feed(std::string_view bytes, const sink& out) {
    if (m_broken) throw error(errc::protocol_error, "the Docker exec stream was already found malformed");
    while (!bytes.empty()) {
        if (m_left == 0) {
            const std::size_t take = std::min(sizeof m_header - m_header_fill, bytes.size());
            std::copy_n(bytes.data(), take, m_header + m_header_fill);
            m_header_fill += take;
            bytes.remove_prefix(take);
            if (m_header_fill < sizeof m_header) return;
            m_header_fill = 0;
            if (m_header[0] > 3 || m_header[1] != 0 || m_header[2] != 0 || m_header[3] != 0) {
                m_broken = true;
                char shown[64];
                std::snprintf(shown, sizeof shown, "%02x %02x %02x %02x", m_header[0], m_header[1], m_header[2],
                              m_header[3]);
                throw error(errc::protocol_error,
                            "the Docker exec stream has a malformed frame header (" + std::string(shown) +
                                " ...): was the exec started with a TTY?");
            }
            m_stream = static_cast<docker_stream>(m_header[0]);
            m_left = static_cast<std::uint32_t>(m_header[4]) << 24 | static_cast<std::uint32_t>(m_header[5]) << 16 |
                     static_cast<std::uint32_t>(m_header[6]) << 8 | static_cast<std::uint32_t>(m_header[7]);
            ++m_frames;
            continue;
        }
        const std::size_t take = std::min<std::size_t>(m_left, bytes.size());
        m_left -= static_cast<std::uint32_t>(take);
        const std::string_view piece = bytes.substr(0, take);
        bytes.remove_prefix(take);
        if (out) out(m_stream, piece);
    }
}

}  // namespace kernex::docker
