// The exec stream demultiplexer: frames split anywhere, empty frames, both
// streams, the daemon's error stream, malformed headers (suite unit: no daemon).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "docker/exec_stream.hpp"
#include "kernex/error.hpp"

using kernex::docker_stream;
using kernex::docker::exec_stream_demuxer;

namespace {

std::string frame(unsigned char stream, const std::string& payload) {
    std::string out = {static_cast<char>(stream), 0, 0, 0};
    const auto n = static_cast<std::uint32_t>(payload.size());
    out += static_cast<char>(n >> 24);
    out += static_cast<char>(n >> 16);
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n);
    return out + payload;
}

struct collected {
    std::string out, err, system;
    std::vector<std::pair<docker_stream, std::string>> pieces;
    exec_stream_demuxer::sink sink() {
        return [this](docker_stream s, std::string_view data) {
            pieces.emplace_back(s, std::string(data));
            (s == docker_stream::standard_error ? err : s == docker_stream::system_error ? system : out) += data;
        };
    }
};

}  // namespace

TEST_CASE("frames fed whole, byte by byte and in every split give the same streams") {
    const std::string stream = frame(1, "hello\n") + frame(2, "oops\n") + frame(1, "") + frame(1, "world\n") +
                               frame(3, "daemon says no");
    for (std::size_t split = 0; split <= stream.size(); ++split) {
        exec_stream_demuxer demuxer;
        collected c;
        demuxer.feed(std::string_view(stream).substr(0, split), c.sink());
        demuxer.feed(std::string_view(stream).substr(split), c.sink());
        CHECK(c.out == "hello\nworld\n");
        CHECK(c.err == "oops\n");
        CHECK(c.system == "daemon says no");
        CHECK(demuxer.at_frame_boundary());
        CHECK(demuxer.frames() == 5);
    }
    exec_stream_demuxer demuxer;
    collected c;
    for (char ch : stream) demuxer.feed(std::string_view(&ch, 1), c.sink());
    CHECK(c.out == "hello\nworld\n");
    CHECK(c.err == "oops\n");
}

TEST_CASE("order across streams is kept and empty frames make no call") {
    exec_stream_demuxer demuxer;
    collected c;
    demuxer.feed(frame(2, "a") + frame(1, "") + frame(1, "b") + frame(2, "c"), c.sink());
    REQUIRE(c.pieces.size() == 3);
    CHECK(c.pieces[0] == std::pair{docker_stream::standard_error, std::string("a")});
    CHECK(c.pieces[1] == std::pair{docker_stream::standard_output, std::string("b")});
    CHECK(c.pieces[2] == std::pair{docker_stream::standard_error, std::string("c")});
}

TEST_CASE("a stream cut inside a header or a payload is not at a frame boundary") {
    exec_stream_demuxer demuxer;
    collected c;
    const std::string f = frame(1, "abcdef");
    demuxer.feed(f.substr(0, 3), c.sink());
    CHECK_FALSE(demuxer.at_frame_boundary());
    demuxer.feed(f.substr(3, 7), c.sink());
    CHECK_FALSE(demuxer.at_frame_boundary());
    CHECK(c.out == "ab");
    demuxer.feed(f.substr(10), c.sink());
    CHECK(demuxer.at_frame_boundary());
    CHECK(c.out == "abcdef");
}

TEST_CASE("a huge size field is streamed, not allocated") {
    exec_stream_demuxer demuxer;
    collected c;
    std::string header = {1, 0, 0, 0, '\xff', '\xff', '\xff', '\xff'};
    demuxer.feed(header + "xyz", c.sink());
    CHECK(c.out == "xyz");
    CHECK_FALSE(demuxer.at_frame_boundary());
}

TEST_CASE("malformed headers throw protocol_error, and keep throwing") {
    for (const std::string& bad : {std::string{4, 0, 0, 0, 0, 0, 0, 1, 'x'}, std::string{1, 0, 1, 0, 0, 0, 0, 1, 'x'},
                                  std::string("hello world\n")}) {
        exec_stream_demuxer demuxer;
        collected c;
        try {
            demuxer.feed(bad, c.sink());
            FAIL("no exception");
        } catch (const kernex::error& e) {
            CHECK(e.code() == kernex::errc::protocol_error);
        }
        CHECK_THROWS_AS(demuxer.feed(frame(1, "x"), c.sink()), kernex::error);
        CHECK(c.out.empty());
    }
}

TEST_CASE("a null sink drops payload but still follows the framing") {
    exec_stream_demuxer demuxer;
    demuxer.feed(frame(1, "abc") + frame(2, "d"), {});
    CHECK(demuxer.frames() == 2);
    CHECK(demuxer.at_frame_boundary());
}
