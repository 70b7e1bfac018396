// The gateway's pieces that need no server: URL parsing and the websocket
// message codec (text JSON and the binary buffers form), including
// malformed input that must be dropped and counted, never thrown.
#include <doctest/doctest.h>

#include <random>

#include "gateway/gateway_url.hpp"
#include "gateway/ws_codec.hpp"
#include "kernex/error.hpp"
#include "kernex/gateway.hpp"

using namespace kernex;
using namespace kernex::gateway_detail;

namespace {

std::string be32(std::uint32_t v) {
    std::string s;
    for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xff));
    return s;
}

std::optional<incoming> decode(std::string_view data, bool binary, reject_reason& why) {
    return decode_ws_message(data, binary, codec_options{}, why);
}

}  // namespace

TEST_CASE("gateway URLs: schemes, hosts, ports, base paths, tokens") {
    auto u = parse_gateway_url("http://127.0.0.1:8888");
    CHECK(!u.tls);
    CHECK(u.host == "127.0.0.1");
    CHECK(u.host_is_ip);
    CHECK(u.port == "8888");
    CHECK(u.base_path.empty());
    CHECK(u.display == "http://127.0.0.1:8888");

    u = parse_gateway_url("HTTPS://Jupyter.Example.org/hub/user/ann/?token=abc%2Fdef&x=1");
    CHECK(u.tls);
    CHECK(u.host == "jupyter.example.org");
    CHECK(!u.host_is_ip);
    CHECK(u.port == "443");
    CHECK(u.base_path == "/hub/user/ann");
    CHECK(u.token == "abc/def");
    CHECK(u.display == "https://jupyter.example.org/hub/user/ann");
    CHECK(u.host_header() == "jupyter.example.org");

    u = parse_gateway_url("ws://[::1]:9000/");
    CHECK(u.host == "::1");
    CHECK(u.host_is_ip);
    CHECK(u.host_header() == "[::1]:9000");
    CHECK(u.base_path.empty());

    u = parse_gateway_url("http://user:secret@gw.local:80/base");
    CHECK(u.display == "http://gw.local/base");  // no user info shown

    for (const char* bad : {"", "127.0.0.1:8888", "ftp://host", "http://", "http://host:0", "http://host:70000",
                            "http://host:port", "http://[::1", "http://[zz]:1", "http://ho st:1", "http://a/b c"}) {
        CAPTURE(bad);
        try {
            parse_gateway_url(bad);
            FAIL("accepted");
        } catch (const error& e) {
            CHECK(e.code() == errc::invalid_argument);
            CHECK(std::string(e.what()).find("expected http://") != std::string::npos);
        }
    }
    // A token in the query is never repeated in a message.
    try {
        parse_gateway_url("gopher://h/?token=s3cr3t");
        FAIL("accepted");
    } catch (const error& e) {
        CHECK(std::string(e.what()).find("s3cr3t") == std::string::npos);
    }
    CHECK(percent_encode("a b/c~") == "a%20b%2Fc~");
}

TEST_CASE("gateway options from the environment and from arguments") {
    ::unsetenv("KERNEX_GATEWAY_URL");
    ::unsetenv("KERNEX_GATEWAY_TOKEN");
    CHECK(!gateway_options::from_environment());
    CHECK(!gateway_options::from_arguments("", "tok"));
    CHECK(gateway_options::from_arguments("http://h:1", "")->url == "http://h:1");
    ::setenv("KERNEX_GATEWAY_TOKEN", "envtok", 1);
    CHECK(gateway_options::from_arguments("http://h:1", "")->token == "envtok");
    ::setenv("KERNEX_GATEWAY_URL", "http://env:2", 1);
    ::setenv("KERNEX_GATEWAY_TOKEN", "envtok", 1);
    auto o = gateway_options::from_arguments("", "");
    REQUIRE(o);
    CHECK(o->url == "http://env:2");
    CHECK(o->token == "envtok");
    o = gateway_options::from_arguments("http://flag:3", "flagtok");
    CHECK(o->url == "http://flag:3");
    CHECK(o->token == "flagtok");
    ::unsetenv("KERNEX_GATEWAY_URL");
    ::unsetenv("KERNEX_GATEWAY_TOKEN");
}

TEST_CASE("websocket codec: text and binary round trips") {
    message m = make_request("execute_request", {{"code", "print(1)"}}, "sess");
    auto text = encode_ws_message(channel::shell, m);
    CHECK(!text.binary);
    auto j = json::parse(text.data);
    CHECK(j["channel"] == "shell");
    CHECK(j["header"]["msg_type"] == "execute_request");
    CHECK(j["parent_header"] == json::object());
    CHECK(j["buffers"] == json::array());

    // What the server sends back has the same shape.
    reject_reason why{};
    auto in = decode(text.data, false, why);
    REQUIRE(in);
    CHECK(in->channel == channel::shell);
    CHECK(in->message.header.msg_id == m.header.msg_id);
    CHECK(in->message.content["code"] == "print(1)");

    message reply = make_reply(m, "comm_msg", {{"data", {{"k", 1}}}});
    reply.buffers = {"abc", std::string("\0\1\2", 3), ""};
    auto bin = encode_ws_message(channel::iopub, reply);
    CHECK(bin.binary);
    CHECK(bin.data.substr(0, 4) == be32(4));
    in = decode(bin.data, true, why);
    REQUIRE(in);
    CHECK(in->channel == channel::iopub);
    CHECK(in->message.parent_header.msg_id == m.header.msg_id);
    REQUIRE(in->message.buffers.size() == 3);
    CHECK(in->message.buffers[0] == "abc");
    CHECK(in->message.buffers[1] == std::string("\0\1\2", 3));
    CHECK(in->message.buffers[2].empty());

    for (const char* name : {"shell", "iopub", "stdin", "control"}) CHECK(channel_named(name));
    CHECK(!channel_named("hb"));
}

TEST_CASE("websocket codec: malformed messages are rejected with a reason, never thrown") {
    reject_reason why{};
    auto rejects = [&](std::string_view data, bool binary, reject_reason expected) {
        CAPTURE(data);
        CHECK(!decode(data, binary, why));
        CHECK(why == expected);
    };
    rejects("", false, reject_reason::bad_json);
    rejects("not json", false, reject_reason::bad_json);
    rejects("[1,2]", false, reject_reason::bad_json);
    rejects(std::string(5000, '[') + std::string(5000, ']'), false, reject_reason::bad_json);
    rejects(R"({"header":{"msg_type":"status"},"content":{}})", false, reject_reason::bad_header);  // no channel
    rejects(R"({"channel":"hb","header":{"msg_type":"status"},"content":{}})", false, reject_reason::bad_header);
    rejects(R"({"channel":"iopub","header":{"msg_id":"1"},"content":{}})", false, reject_reason::bad_header);
    rejects(R"({"channel":"iopub","header":{"msg_type":7},"content":{}})", false, reject_reason::bad_header);
    rejects(R"({"channel":"iopub","header":"x","content":{}})", false, reject_reason::bad_header);
    rejects(R"({"channel":"iopub","header":{"msg_type":"s"},"parent_header":[],"content":{}})", false,
            reject_reason::bad_header);
    rejects(R"({"channel":"iopub","header":{"msg_type":"s"},"content":"x"})", false, reject_reason::bad_json);
    rejects("\xff\xfe{}", false, reject_reason::bad_json);
    // Binary: truncated, zero parts, offsets out of range or backwards.
    rejects("", true, reject_reason::too_few_frames);
    rejects(std::string("\0\0", 2), true, reject_reason::too_few_frames);
    rejects(be32(0), true, reject_reason::too_few_frames);
    rejects(be32(1), true, reject_reason::too_few_frames);
    rejects(be32(1) + be32(100) + "{}", true, reject_reason::too_few_frames);
    rejects(be32(2) + be32(12) + be32(11) + "{}", true, reject_reason::too_few_frames);
    rejects(be32(0xffffffff) + be32(8), true, reject_reason::too_few_frames);
    rejects(be32(1) + be32(8) + "nope", true, reject_reason::bad_json);
    // Valid JSON, missing pieces still count as rejects.
    std::string ok = R"({"channel":"iopub","header":{"msg_type":"status"},"parent_header":null,"content":{}})";
    CHECK(decode(ok, false, why));
    CHECK(decode(be32(1) + be32(8) + ok, true, why));

    codec_options small;
    small.max_message_bytes = 10;
    CHECK(!decode_ws_message(ok, false, small, why));
    CHECK(why == reject_reason::oversized);

    // Random bytes, text and binary: never a throw or a crash.
    std::mt19937 rng(7);
    for (int i = 0; i < 3000; ++i) {
        std::string data(rng() % 64, '\0');
        for (auto& c : data) c = static_cast<char>(rng());
        if (i % 3 == 0 && data.size() >= 8) data.replace(0, 8, be32(1) + be32(8));
        CHECK_NOTHROW(decode_ws_message(data, i % 2 == 0, codec_options{}, why));
    }
}
