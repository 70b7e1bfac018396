// The wire module: known-answer signatures against jupyter_client, every
// rejection with its reason, and the message helpers.
#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <ctime>
#include <deque>
#include <fstream>
#include <iomanip>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <doctest/doctest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <random>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "kernex/error.hpp"
#include "kernex/message.hpp"
#include "wire/json_text.hpp"
#include "wire/replay_guard.hpp"
#include "wire/sha256.hpp"

using kernex::frame_codec;
using kernex::json;
using kernex::message;
using kernex::reject_reason;
using frames_t = std::vector<std::string>;

namespace {

std::string from_hex(std::string_view hex) {
    REQUIRE(hex.size() % 2 == 0);
    std::string out;
    for (std::size_t i = 0; i < hex.size(); i += 2)
        out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
    return out;
}

std::string to_hex(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out.push_back(digits[c >> 4]);
        out.push_back(digits[c & 0x0f]);
    }
    return out;
}

frames_t hex_list(const json& list) {
    frames_t out;
    for (const auto& h : list) out.push_back(from_hex(h.get<std::string>()));
    return out;
}

json hex_list_json(const frames_t& list) {
    json out = json::array();
    for (const auto& f : list) out.push_back(to_hex(f));
    return out;
}

const json& known_answers() {
    static const json data = [] {
        const char* dir = std::getenv("KERNEX_TEST_DATA");
        REQUIRE_MESSAGE(dir != nullptr, "KERNEX_TEST_DATA is not set; run through `meson test`");
        std::ifstream in(std::string(dir) + "/signatures.json");
        REQUIRE_MESSAGE(in.good(), "cannot read signatures.json in ", dir);
        return json::parse(in);
    }();
    return data;
}

// What a decoded message looks like in signatures.json's "expected" form.
void check_reads_as(const message& m, const json& expected) {
    CHECK(m.header.to_json() == expected["header"]);
    CHECK(m.parent_header.to_json() == expected["parent_header"]);
    CHECK(m.metadata == expected["metadata"]);
    CHECK(m.content == expected["content"]);
    CHECK(hex_list_json(m.identities) == expected["identities_hex"]);
    CHECK(hex_list_json(m.buffers) == expected["buffers_hex"]);
}

kernex::message_header fixed_header(std::string msg_type, int n) {
    return {.msg_id = "0b5e4c1e-9a8f7d6c5b4a39210f3a1c0d_" + std::to_string(n),
            .session = "0b5e4c1e-9a8f7d6c5b4a39210f3a1c0d",
            .username = "kernex",
            .date = "2024-05-17T10:00:0" + std::to_string(n) + ".654321Z",
            .msg_type = std::move(msg_type),
            .version = "5.3"};
}

struct kernex_case {
    std::string name, key, scheme;
    message msg;
};

// Messages kernex encodes; their frames are checked in (kernex_encoded), each
// accepted by jupyter_client when it was stored.
std::vector<kernex_case> kernex_cases() {
    std::vector<kernex_case> cases;
    message request;
    request.header = fixed_header("execute_request", 1);
    request.content = {{"code", "print(\"h\xc3\xa9llo \xf0\x9f\x98\x80\")\n\tx = {'a': [1, 2.5, -3]}\x01"},
                       {"silent", false},
                       {"store_history", true},
                       {"user_expressions", json::object()},
                       {"allow_stdin", false},
                       {"stop_on_error", true}};
    cases.push_back({"sha256_execute_request", "kernex-key-\xe2\x9c\x93", "hmac-sha256", request});

    message reply;
    reply.identities = {std::string("\x00\x8b\x45k", 4), "peer-two"};
    reply.header = fixed_header("comm_msg", 2);
    reply.parent_header = request.header;
    reply.metadata = {{"trusted", true}};
    reply.content = {{"comm_id", "c0ffee"}, {"data", {{"n", 12345678901234567890ull}, {"x", 0.1}}}};
    reply.buffers = {std::string("\x00\x01\xff<IDS|MSG>", 13), ""};
    cases.push_back({"sha512_comm_ids_buffers", "a sha512 key", "hmac-sha512", reply});

    message unsigned_msg;
    unsigned_msg.header = fixed_header("kernel_info_request", 3);
    cases.push_back({"unsigned_kernel_info", "", "hmac-sha256", unsigned_msg});
    return cases;
}

// A signed message that passes every check, and the codec's key.
const std::string test_key = "0123456789abcdef-test-key";

frames_t valid_frames(const frame_codec& codec, std::string content = R"({"code":"1+1"})") {
    message m = kernex::make_request("execute_request", json::parse(content), "sess");
    m.identities = {"id-one", "id-two"};
    m.buffers = {"buffer-0", std::string("\x00\xff", 2)};
    return codec.encode(m);
}

// The index of the delimiter frame in valid_frames().
constexpr std::size_t delim = 2;

// Replaces the JSON part at offset (0 header .. 3 content) and re-signs, so
// the signature is valid over whatever the part now holds.
frames_t resigned(const frame_codec& codec, frames_t frames, std::size_t part, std::string text) {
    frames[delim + 2 + part] = std::move(text);
    frames[delim + 1] = codec.sign().sign({frames[delim + 2], frames[delim + 3], frames[delim + 4], frames[delim + 5]});
    return frames;
}

reject_reason rejected_for(frame_codec& codec, frames_t frames) {
    reject_reason why{};
    const auto m = codec.decode(std::move(frames), &why);
    REQUIRE_MESSAGE(!m.has_value(), "the message was accepted");
    return why;
}

}  // namespace

TEST_CASE("jupyter_client's signatures are reproduced and its frames accepted") {
    const json& cases = known_answers()["reference"];
    REQUIRE(cases.size() >= 6);
    for (const auto& c : cases) {
        CAPTURE(c["name"].get<std::string>());
        frames_t frames = hex_list(c["frames_hex"]);
        const auto d = static_cast<std::size_t>(std::find(frames.begin(), frames.end(), "<IDS|MSG>") - frames.begin());
        REQUIRE(d < frames.size());

        const kernex::signer s(c["key"].get<std::string>(), c["scheme"].get<std::string>());
        CHECK(s.sign({frames[d + 2], frames[d + 3], frames[d + 4], frames[d + 5]}) == c["signature"].get<std::string>());
        CHECK(s.verify(c["signature"].get<std::string>(), {frames[d + 2], frames[d + 3], frames[d + 4], frames[d + 5]}));

        frame_codec codec(c["key"].get<std::string>(), c["scheme"].get<std::string>());
        reject_reason why{};
        const auto m = codec.decode(std::move(frames), &why);
        REQUIRE_MESSAGE(m.has_value(), "rejected: ", kernex::to_string(why));
        check_reads_as(*m, c["expected"]);
    }
}

TEST_CASE("kernex's frames are the ones jupyter_client accepted") {
    const std::vector<kernex_case> cases = kernex_cases();
    if (const char* dump = std::getenv("KERNEX_DUMP_ENCODED")) {
        // For make_signatures.py --kernex: it has jupyter_client check these.
        json out = {{"cases", json::array()}};
        for (const auto& c : cases)
            out["cases"].push_back({{"name", c.name}, {"key", c.key}, {"scheme", c.scheme},
                                    {"frames_hex", hex_list_json(frame_codec(c.key, c.scheme).encode(c.msg))}});
        std::ofstream(dump) << out.dump(1) << '\n';
    }

    const json& stored = known_answers()["kernex_encoded"];
    REQUIRE(stored.size() == cases.size());
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const kernex_case& c = cases[i];
        CAPTURE(c.name);
        REQUIRE(stored[i]["name"] == c.name);
        const frames_t frames = frame_codec(c.key, c.scheme).encode(c.msg);
        // Byte for byte: a change to kernex's encoding or signing must be
        // re-verified by jupyter_client (make_signatures.py --kernex).
        CHECK(hex_list_json(frames) == stored[i]["frames_hex"]);

        // jupyter_client read what kernex meant, and so does kernex.
        const json& read = stored[i]["read_by_jupyter_client"];
        CHECK(read["header"] == c.msg.header.to_json());
        CHECK(read["parent_header"] == c.msg.parent_header.to_json());
        CHECK(read["content"] == c.msg.content);
        CHECK(read["metadata"] == c.msg.metadata);
        CHECK(read["identities_hex"] == hex_list_json(c.msg.identities));
        CHECK(read["buffers_hex"] == hex_list_json(c.msg.buffers));
        frame_codec reader(c.key, c.scheme);
        const auto m = reader.decode(frame_codec(c.key, c.scheme).encode(c.msg));
        REQUIRE(m.has_value());
        check_reads_as(*m, read);
    }
}

TEST_CASE("signature schemes") {
    SUBCASE("sha256 and sha512 lengths") {
        CHECK(kernex::signer("k").hex_length() == 64);
        CHECK(kernex::signer("k", "hmac-sha512").hex_length() == 128);
        CHECK(kernex::signer("k", "hmac-sha512").sign({"a", "b"}).size() == 128);
    }
    SUBCASE("the concatenation of parts is signed") {
        const kernex::signer s("k");
        CHECK(s.sign({"ab", "c"}) == s.sign({"a", "bc"}));
        CHECK(s.sign({"ab", "c"}) != s.sign({"ab", "d"}));
    }
    SUBCASE("an unknown scheme is an error naming the valid ones") {
        for (const char* scheme : {"hmac-md5", "hmac-sha1", "sha256", "HMAC-SHA256", ""}) {
            CAPTURE(scheme);
            try {
                frame_codec codec("key", scheme);
                FAIL("no error for ", scheme);
            } catch (const kernex::error& e) {
                CHECK(e.code() == kernex::errc::unsupported);
                CHECK(std::string(e.what()).find("hmac-sha256") != std::string::npos);
                CHECK(std::string(e.what()).find("hmac-sha512") != std::string::npos);
            }
            CHECK_THROWS_AS(kernex::signer("", scheme), kernex::error);
        }
    }
    SUBCASE("an empty key signs nothing and accepts any signature, as jupyter_client") {
        const kernex::signer s;
        CHECK_FALSE(s.enabled());
        CHECK(s.hex_length() == 0);
        CHECK(s.sign({"a"}).empty());
        CHECK(s.verify("", {"a"}));
        CHECK(s.verify("not hex at all", {"a"}));

        frame_codec codec;
        frames_t frames = valid_frames(codec);
        CHECK(frames[delim + 1].empty());
        frames[delim + 1] = "whatever a peer sends";
        CHECK(codec.decode(frames_t(frames)).has_value());
        // No replay guard: every unsigned message has the same signature.
        CHECK(codec.decode(std::move(frames)).has_value());
    }
}

TEST_CASE("every malformed message is rejected with its reason, before any parsing") {
    frame_codec codec(test_key);
    const frames_t good = valid_frames(codec);
    REQUIRE(good.size() == 10);
    REQUIRE(good[delim] == "<IDS|MSG>");

    SUBCASE("too few frames") {
        CHECK(rejected_for(codec, {"<IDS|MSG>", "sig", "{}", "{}", "{}"}) == reject_reason::too_few_frames);
        CHECK(rejected_for(codec, {}) == reject_reason::too_few_frames);
        // Enough frames in all, but the identities eat them: 4 after the delimiter.
        frames_t short_tail(good.begin(), good.begin() + delim + 5);
        short_tail.insert(short_tail.begin(), "another id");
        CHECK(rejected_for(codec, short_tail) == reject_reason::too_few_frames);
    }
    SUBCASE("no delimiter") {
        frames_t f = good;
        f[delim] = "<IDS|MSG";
        CHECK(rejected_for(codec, f) == reject_reason::no_delimiter);
    }
    SUBCASE("signature length") {
        frames_t f = good;
        f[delim + 1].pop_back();
        CHECK(rejected_for(codec, f) == reject_reason::bad_signature_length);
        f[delim + 1] = good[delim + 1] + "0";
        CHECK(rejected_for(codec, f) == reject_reason::bad_signature_length);
        f[delim + 1].clear();
        CHECK(rejected_for(codec, f) == reject_reason::bad_signature_length);
        // A sha512-length signature on a sha256 session.
        f[delim + 1] = std::string(128, 'a');
        CHECK(rejected_for(codec, f) == reject_reason::bad_signature_length);
    }
    SUBCASE("signature hex") {
        frames_t f = good;
        f[delim + 1][10] = 'g';
        CHECK(rejected_for(codec, f) == reject_reason::bad_signature_hex);
        // Upper case: jupyter_client compares against hexdigest(), lower case.
        f = good;
        for (char& c : f[delim + 1]) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        REQUIRE(f[delim + 1] != good[delim + 1]);
        CHECK(rejected_for(codec, f) == reject_reason::bad_signature_hex);
    }
    SUBCASE("wrong key, tampered part, wrong scheme") {
        frame_codec other("another key");
        CHECK(rejected_for(other, good) == reject_reason::bad_signature);
        for (std::size_t part = 0; part < 4; ++part) {
            CAPTURE(part);
            frames_t f = good;
            f[delim + 2 + part].push_back(' ');
            CHECK(rejected_for(codec, f) == reject_reason::bad_signature);
        }
        frames_t f = good;
        f[delim + 1][0] = f[delim + 1][0] == '0' ? '1' : '0';
        CHECK(rejected_for(codec, f) == reject_reason::bad_signature);
    }
    SUBCASE("a valid signature over bad JSON") {
        CHECK(rejected_for(codec, resigned(codec, good, 0, "{\"msg_type\": ")) == reject_reason::bad_json);
        CHECK(rejected_for(codec, resigned(codec, good, 1, "[]")) == reject_reason::bad_json);
        CHECK(rejected_for(codec, resigned(codec, good, 2, "[]")) == reject_reason::bad_json);
        CHECK(rejected_for(codec, resigned(codec, good, 1, "null")) == reject_reason::bad_json);
        // A null metadata (xeus-python's comm message with metadata None) is an empty one.
        auto null_metadata = codec.decode(resigned(codec, good, 2, "null"));
        REQUIRE(null_metadata.has_value());
        CHECK(null_metadata->metadata == json::object());
        CHECK(rejected_for(codec, resigned(codec, good, 3, "{} trailing")) == reject_reason::bad_json);
        CHECK(rejected_for(codec, resigned(codec, good, 3, "")) == reject_reason::bad_json);
        CHECK(rejected_for(codec, resigned(codec, good, 3, "{\"a\": NaN}")) == reject_reason::bad_json);
    }
    SUBCASE("a bad header") {
        CHECK(rejected_for(codec, resigned(codec, good, 0, R"({"msg_id": "x"})")) == reject_reason::bad_header);
        CHECK(rejected_for(codec, resigned(codec, good, 0, R"({"msg_type": ""})")) == reject_reason::bad_header);
        CHECK(rejected_for(codec, resigned(codec, good, 0, R"({"msg_type": 3})")) == reject_reason::bad_header);
        CHECK(rejected_for(codec, resigned(codec, good, 0, R"({"msg_type": "x", "date": null})")) ==
              reject_reason::bad_header);
        CHECK(rejected_for(codec, resigned(codec, good, 1, R"({"session": ["s"]})")) == reject_reason::bad_header);
        // Fields kernex does not model are ignored, not refused.
        CHECK(codec.decode(resigned(codec, good, 0, R"({"msg_type": "x", "subshell_id": 5})")).has_value());
    }
    SUBCASE("a replayed message") {
        CHECK(codec.decode(frames_t(good)).has_value());
        CHECK(rejected_for(codec, good) == reject_reason::replayed);
        // Changing only a buffer does not make it new: buffers are not signed.
        frames_t f = good;
        f.back() = "other buffer";
        CHECK(rejected_for(codec, f) == reject_reason::replayed);
    }
    SUBCASE("oversized, checked first") {
        frame_codec small(test_key, "hmac-sha256", {.max_message_bytes = 64});
        CHECK(rejected_for(small, good) == reject_reason::oversized);
        CHECK(rejected_for(small, {std::string(65, 'x')}) == reject_reason::oversized);
        frame_codec exact(test_key, "hmac-sha256", {.max_message_bytes = 0});
        CHECK(rejected_for(exact, {"x"}) == reject_reason::oversized);
    }
    SUBCASE("the order of the checks") {
        // Each case fails two checks; the earlier one is reported.
        frames_t f = {"a", "<IDS|MSG>", "short", "{"};
        CHECK(rejected_for(codec, f) == reject_reason::too_few_frames);
        f = good;
        f[delim + 1] = "short";
        f[delim + 2] = "{not json";
        CHECK(rejected_for(codec, f) == reject_reason::bad_signature_length);
        f[delim + 1] = std::string(64, 'z');
        CHECK(rejected_for(codec, f) == reject_reason::bad_signature_hex);
        f[delim + 1] = good[delim + 1];
        CHECK(rejected_for(codec, f) == reject_reason::bad_signature);
    }
}

TEST_CASE("rejections are counted by reason") {
    frame_codec codec(test_key);
    const frames_t good = valid_frames(codec);
    frames_t bad_sig = good;
    bad_sig[delim + 1][5] = 'x';
    for (int i = 0; i < 3; ++i) CHECK_FALSE(codec.decode(frames_t(bad_sig)).has_value());
    CHECK(codec.decode(frames_t(good)).has_value());
    CHECK_FALSE(codec.decode(frames_t(good)).has_value());
    CHECK_FALSE(codec.decode({"x"}).has_value());
    const kernex::reject_counters& n = codec.rejected();
    CHECK(n[reject_reason::bad_signature_hex] == 3);
    CHECK(n[reject_reason::replayed] == 1);
    CHECK(n[reject_reason::too_few_frames] == 1);
    CHECK(n.total() == 5);

    std::set<std::string_view> names;
    for (std::size_t r = 0; r < kernex::reject_reason_count; ++r) names.insert(kernex::to_string(reject_reason(r)));
    CHECK(names.size() == kernex::reject_reason_count);
    CHECK(names.count("unknown") == 0);
}

TEST_CASE("replay history is bounded and forgets the oldest") {
    frame_codec codec(test_key, "hmac-sha256", {.replay_history = 2});
    const frames_t a = valid_frames(codec), b = valid_frames(codec), c = valid_frames(codec);
    CHECK(codec.decode(frames_t(a)).has_value());
    CHECK(codec.decode(frames_t(b)).has_value());
    CHECK(codec.decode(frames_t(c)).has_value());  // a is forgotten
    CHECK(rejected_for(codec, c) == reject_reason::replayed);
    CHECK(rejected_for(codec, b) == reject_reason::replayed);
    CHECK(codec.decode(frames_t(a)).has_value());  // b is forgotten now
    CHECK(codec.decode(frames_t(b)).has_value());

    // A forged signature is not remembered, so it cannot push real ones out.
    frame_codec guarded(test_key, "hmac-sha256", {.replay_history = 1});
    CHECK(guarded.decode(frames_t(a)).has_value());
    frames_t forged = b;
    forged[delim + 1][0] = forged[delim + 1][0] == '0' ? '1' : '0';
    CHECK(rejected_for(guarded, forged) == reject_reason::bad_signature);
    CHECK(rejected_for(guarded, a) == reject_reason::replayed);

    // An authentic message with bad JSON is remembered: its copy is a replay.
    const frames_t bad = resigned(guarded, b, 3, "[");
    CHECK(rejected_for(guarded, bad) == reject_reason::bad_json);
    CHECK(rejected_for(guarded, bad) == reject_reason::replayed);

    frame_codec off(test_key, "hmac-sha256", {.replay_history = 0});
    CHECK(off.decode(frames_t(a)).has_value());
    CHECK(off.decode(frames_t(a)).has_value());

    CHECK_THROWS_AS(frame_codec(test_key, "hmac-sha256", {.replay_history = std::size_t{1} << 40}), kernex::error);
}

TEST_CASE("the replay guard remembers exactly the last capacity keys, as a plain model does") {
    // The guard's table is open-addressed with deletions shifted back; a
    // model (the last keys in a deque) says what it must answer. One-byte
    // keys: many keys share a home slot, so the table's clusters, wrapping
    // and deletions in the middle of a cluster are all exercised.
    // 5000: the table starts at 1024 slots and doubles four times, then
    // keys are forgotten.
    std::mt19937 rng(17);
    for (std::size_t capacity : {1u, 2u, 3u, 7u, 64u, 100u, 200u, 5000u}) {
        for (std::size_t key_length : {1u, 2u, 32u}) {
            kernex::wire::replay_guard guard(capacity, key_length);
            std::deque<std::string> model;
            std::set<std::string> in_model;
            auto remembered = [&](const std::string& k) { return in_model.count(k) > 0; };
            for (int step = 0; step < 20000; ++step) {
                std::string key(key_length, '\0');
                // A recent key (a replay) half the time; often a key the
                // model forgot a while ago.
                if (!model.empty() && rng() % 2 == 0) {
                    key = model[rng() % model.size()];
                } else {
                    for (auto& c : key) c = static_cast<char>(rng() % (key_length == 1 ? 256 : 4));
                }
                const bool expected = !remembered(key);
                REQUIRE(guard.admit(key) == expected);
                if (expected) {
                    model.push_back(key);
                    in_model.insert(key);
                    if (model.size() > capacity) {
                        in_model.erase(model.front());
                        model.pop_front();
                    }
                }
                REQUIRE(guard.size() == model.size());
            }
        }
    }
    kernex::wire::replay_guard off(0, 32);
    CHECK(off.admit(std::string(32, 'a')));
    CHECK(off.admit(std::string(32, 'a')));
}

TEST_CASE("buffers are not signed; identities are kept") {
    frame_codec sender(test_key);
    const frames_t good = valid_frames(sender);
    frames_t changed = good;
    changed[good.size() - 2] = "a different buffer";
    changed.push_back("one more buffer");
    const auto m = frame_codec(test_key).decode(std::move(changed));
    REQUIRE(m.has_value());
    CHECK(m->buffers == frames_t{"a different buffer", std::string("\x00\xff", 2), "one more buffer"});
    CHECK(m->identities == frames_t{"id-one", "id-two"});

    // A reply goes back through the same routing identities.
    const message reply = kernex::make_reply(*m, "execute_reply", {{"status", "ok"}});
    const frames_t out = sender.encode(reply);
    CHECK(out[0] == "id-one");
    CHECK(out[1] == "id-two");
    CHECK(out[2] == "<IDS|MSG>");
}

TEST_CASE("a received message reads back as it was sent") {
    frame_codec codec(test_key, "hmac-sha512");
    message m = kernex::make_request("comm_msg", {{"data", {{"x", {1, 2.5, "three", nullptr, true}}}}}, "s-1", "me");
    m.metadata = {{"k", "v"}};
    m.identities = {std::string("\x00\x01", 2)};
    m.buffers = {"b1", ""};
    const message copy = m;
    const frames_t by_copy = codec.encode(m);
    const frames_t by_move = codec.encode(std::move(m));
    CHECK(by_copy == by_move);

    const auto got = frame_codec(test_key, "hmac-sha512").decode(frames_t(by_copy));
    REQUIRE(got.has_value());
    CHECK(got->header.to_json() == copy.header.to_json());
    CHECK(got->parent_header.empty());
    CHECK(got->metadata == copy.metadata);
    CHECK(got->content == copy.content);
    CHECK(got->identities == copy.identities);
    CHECK(got->buffers == copy.buffers);
    CHECK(got->msg_type() == "comm_msg");
}

TEST_CASE("messages decoded one after another into one object read as each decoded alone") {
    frame_codec sender(test_key), fresh(test_key), reused(test_key);
    message into;
    std::mt19937 rng(5);
    for (int i = 0; i < 200; ++i) {
        message m = kernex::make_request(i % 3 ? "stream" : "comm_msg", {{"text", std::string(rng() % 40, 'x')}},
                                         "session-" + std::to_string(rng() % 3));
        if (i % 4 == 0) m.parent_header = kernex::make_request("execute_request", json::object(), "p").header;
        if (i % 5 == 0) m.metadata = {{"k", i}};
        for (int n = static_cast<int>(rng() % 3); n > 0; --n) m.identities.push_back("id" + std::to_string(n));
        for (int n = static_cast<int>(rng() % 3); n > 0; --n) m.buffers.push_back(std::string(rng() % 50, 'b'));
        frames_t frames = sender.encode(m);
        if (i % 7 == 3) frames[frames.size() - 1 - m.buffers.size()] = "{";  // a rejected one in between
        std::vector<std::string_view> views(frames.begin(), frames.end());
        kernex::reject_reason why_fresh{}, why_reused{};
        const auto alone = fresh.decode_view(views, &why_fresh);
        const bool accepted = reused.decode_view_into(views, into, &why_reused);
        REQUIRE(accepted == alone.has_value());
        if (!accepted) {
            CHECK(why_reused == why_fresh);
            continue;
        }
        CHECK(into.header.to_json() == alone->header.to_json());
        CHECK(into.parent_header.to_json() == alone->parent_header.to_json());
        CHECK(into.metadata == alone->metadata);
        CHECK(into.content == alone->content);
        CHECK(into.identities == alone->identities);
        CHECK(into.buffers == alone->buffers);
    }
}

TEST_CASE("encoding") {
    frame_codec codec(test_key);
    SUBCASE("an empty parent header and null parts are sent as {}") {
        message m = kernex::make_request("status", nullptr, "s");
        m.metadata = nullptr;
        const frames_t f = codec.encode(m);
        CHECK(f[1 + 2] == "{}");
        CHECK(f[1 + 3] == "{}");
        CHECK(f[1 + 4] == "{}");
    }
    SUBCASE("invalid UTF-8 is an error, not a message the peer will refuse") {
        const message m = kernex::make_request("execute_request", {{"code", "\xff"}}, "s");
        try {
            codec.encode(m);
            FAIL("encoded invalid UTF-8");
        } catch (const kernex::error& e) {
            CHECK(e.code() == kernex::errc::invalid_argument);
            CHECK(std::string(e.what()).find("content") != std::string::npos);
        }
    }
}

TEST_CASE("JSON nesting is bounded") {
    frame_codec codec;
    const auto nested = [](std::size_t depth) {
        return "{\"a\":" + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
    };
    const auto with_content = [&](std::string content) {
        frames_t f = {"<IDS|MSG>", "", R"({"msg_type":"x"})", "{}", "{}", std::move(content)};
        return f;
    };
    CHECK(codec.decode(with_content(nested(1000))).has_value());
    CHECK(rejected_for(codec, with_content(nested(1001))) == reject_reason::bad_json);
    CHECK(rejected_for(codec, with_content(nested(200000))) == reject_reason::bad_json);
    // Unbalanced, deep and long: fails without exhausting anything.
    CHECK(rejected_for(codec, with_content(std::string(1 << 20, '['))) == reject_reason::bad_json);
    frame_codec shallow("", "hmac-sha256", {.max_json_depth = 3});
    CHECK(shallow.decode(with_content("{\"a\":[[1,2,3,4,5,6,7,8]]}")).has_value());
    CHECK(rejected_for(shallow, with_content("{\"a\":[[[1,2,3,4,5,6,7,8]]]}")) == reject_reason::bad_json);
}

TEST_CASE("ill-formed UTF-8 from a peer reads as U+FFFD, as jupyter_client reads it") {
    frame_codec codec;
    const auto text_of = [&](std::string raw) {
        const auto m = codec.decode({"<IDS|MSG>", "", R"({"msg_type":"x"})", "{}", "{}", "{\"t\":\"" + raw + "\"}"});
        REQUIRE(m.has_value());
        return m->content["t"].get<std::string>();
    };
    const std::string fffd = "\xef\xbf\xbd";
    CHECK(text_of("a\xff" "b") == "a" + fffd + "b");
    CHECK(text_of("\xed\xa0\x80") == fffd + fffd + fffd);      // an encoded surrogate
    CHECK(text_of("\xf0\x9f\x98!") == fffd + "!");              // a truncated sequence
    CHECK(text_of("\xc0\xaf") == fffd + fffd);                  // an overlong '/'
    CHECK(text_of("\xf4\x90\x80\x80") == fffd + fffd + fffd + fffd);  // above U+10FFFF
    CHECK(text_of("ok \xe2\x9c\x93") == "ok \xe2\x9c\x93");
}

namespace {

// What nlohmann's strict parser makes of text (depth unbounded), as its dump
// (which tells 1, 1.0 and -0.0 apart, unlike ==); nullopt when it refuses.
std::optional<std::string> nlohmann_reads(const std::string& text) {
    const json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j.dump();
}

std::optional<std::string> kernex_reads(const std::string& text, std::size_t max_depth = 100000) {
    json j;
    if (!kernex::wire::parse_json(text, j, {.max_depth = max_depth})) return std::nullopt;
    return j.dump();
}

bool is_utf8(std::string_view s) {
    for (std::size_t i = 0, bad = 0; i < s.size();) {
        const std::size_t n = kernex::wire::utf8_sequence_at(s, i, bad);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

// A random JSON text, well-formed, with the shapes a kernel sends and the
// corners of the grammar.
std::string random_json(std::mt19937& rng, int depth) {
    static const char* const atoms[] = {
        "0", "-0", "1", "-1", "12345678901234567890", "18446744073709551615", "18446744073709551616",
        "-9223372036854775808", "-9223372036854775809", "1.5", "-0.0", "1e10", "1E-10", "2.5e+3", "1e-400",
        "4.9e-324", "1.7976931348623157e308", "0.1", "123.456e-7", "true", "false", "null", "\"\"",
        "\"plain text\"", "\"line 1\\nline 2\\n\"", "\"\\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t\"",
        "\"\\u0000\\u001f\\u0041\\u00e9\\u20AC\\uffff\"", "\"\\ud83d\\ude00\"",
        "\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\"", "\"0123456789abcdef0123456789abcdef01\""};
    std::uniform_int_distribution<int> pick(0, 9);
    const int what = depth > 4 ? 0 : pick(rng);
    std::string ws[] = {"", " ", "\n", "\t ", "\r\n"};
    auto space = [&] { return ws[static_cast<std::size_t>(pick(rng)) % 5]; };
    if (what < 6) return atoms[static_cast<std::size_t>(rng()) % std::size(atoms)];
    const int n = pick(rng) % 4;
    std::string out = what < 8 ? "{" : "[";
    for (int i = 0; i < n; ++i) {
        if (i) out += ",";
        out += space();
        if (what < 8) out += "\"k" + std::to_string(pick(rng) % 3) + "\"" + space() + ":" + space();
        out += random_json(rng, depth + 1) + space();
    }
    out += what < 8 ? "}" : "]";
    return out;
}

// Changes, cuts or doubles one to three bytes of a JSON text.
void mutate(std::mt19937& rng, std::string& text) {
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !text.empty(); ++e) {
        const std::size_t at = rng() % text.size();
        static const char bytes[] = "\"\\{}[],:.-+eE0123456789 \n\x01\x7f\xc3\xa9u";
        switch (rng() % 4) {
        case 0: text[at] = bytes[rng() % (sizeof bytes - 1)]; break;
        case 1: text.erase(at, 1 + rng() % 3); break;
        case 2: text.insert(at, 1, bytes[rng() % (sizeof bytes - 1)]); break;
        default: text.resize(at); break;
        }
    }
}

}  // namespace

TEST_CASE("signatures are OpenSSL's HMAC, for every key length and both schemes") {
    std::mt19937 rng(99);
    auto bytes = [&](std::size_t n) {
        std::string s(n, '\0');
        for (char& c : s) c = static_cast<char>(rng());
        return s;
    };
    for (const auto& [scheme, md] : {std::pair{"hmac-sha256", EVP_sha256()}, std::pair{"hmac-sha512", EVP_sha512()}}) {
        for (std::size_t key_length : {1, 2, 31, 63, 64, 65, 127, 128, 129, 300}) {
            const std::string key = bytes(key_length);
            const kernex::signer s(key, scheme);
            for (int i = 0; i < 20; ++i) {
                const std::string a = bytes(rng() % 200), b = bytes(rng() % 3000), c = bytes(rng() % 2), d;
                unsigned char expected[EVP_MAX_MD_SIZE];
                unsigned int len = 0;
                const std::string all = a + b + c + d;
                REQUIRE(HMAC(md, key.data(), static_cast<int>(key.size()),
                             reinterpret_cast<const unsigned char*>(all.data()), all.size(), expected, &len));
                CAPTURE(scheme);
                CAPTURE(key_length);
                const std::string hex = s.sign({a, b, c, d});
                CHECK(hex == to_hex(std::string_view(reinterpret_cast<const char*>(expected), len)));
                CHECK(s.verify(hex, {a, b, c, d}));
                CHECK_FALSE(s.verify(hex, {a, b, c, "x"}));
            }
        }
    }
}

TEST_CASE("kernex's JSON parser reads what nlohmann reads, as nlohmann reads it") {
    const std::vector<std::string> cases = {
        "{}", "[]", " {} ", "\xef\xbb\xbf{}", "\xef\xbb{}", "{\"a\":1,\"a\":2}", "{\"a\":{}}", "[1,[2,[3]]]",
        "", " ", "{", "}", "[", "]", "{,}", "[,]", "[1,]", "{\"a\":1,}", "{\"a\"}", "{\"a\":}", "{a:1}", "{'a':1}",
        "[1 2]", "[01]", "[-]", "[1.]", "[.5]", "[1e]", "[1e+]", "[+1]", "[0x10]", "[1e400]", "[-1e400]", "[NaN]",
        "[Infinity]", "[tru]", "[truex]", "[nul]", "[True]", "{} {}", "{}x", "\"a", "\"\\x\"", "\"\\u12\"",
        "\"\\u12g4\"", "\"\\ud800\"", "\"\\ud800x\"", "\"\\ud800\\u0041\"", "\"\\udc00\"",
        "\"\\ud800\\udc00\"", "\"\\uDBFF\\uDFFF\"", "\"tab\there\"", std::string("\"nul\0\"", 6),
        std::string("[1,\0]", 5), "\"\x7f\"", "[1,2,3]\n", "123", "-0", "\"x\"", "null", "[\"\\/\"]",
        "[1E5, 1e-5, 0.5e1, -0e0]", "{\"\":\"\"}", "[[[[[[[[[[]]]]]]]]]]", "{\"a\" : [ 1 , { \"b\" : null } ] }",
        "\x0c{}", "{}\x0b", "[1,\n2]",
    };
    for (const auto& text : cases) {
        CAPTURE(text);
        CHECK(kernex_reads(text) == nlohmann_reads(text));
    }
    // nlohmann takes a NUL byte for the end of the input and ignores what
    // follows; kernex reads the whole text, as Python's json does.
    CHECK(nlohmann_reads(std::string("[1]\0x", 5)).has_value());
    CHECK_FALSE(kernex_reads(std::string("[1]\0x", 5)).has_value());
    // Random documents, then the same with bytes changed, cut and doubled.
    std::mt19937 rng(20261207);
    std::size_t agreed_valid = 0;
    for (int i = 0; i < 20000; ++i) {
        std::string text = random_json(rng, 0);
        if (i % 2) mutate(rng, text);
        if (!is_utf8(text)) continue;  // nlohmann refuses what kernex reads as U+FFFD
        CAPTURE(text);
        const auto ours = kernex_reads(text);
        REQUIRE(ours == nlohmann_reads(text));
        agreed_valid += ours.has_value();
    }
    CHECK(agreed_valid > 10000);
}

TEST_CASE("a header is read as parse_json and message_header::from_json read it, with no JSON value built") {
    // What decoding did before: parse the part, require an object, take the
    // fields (a field that is not a string: bad_field).
    const auto reference = [](const std::string& text, std::size_t depth) -> std::string {
        json j;
        if (!kernex::wire::parse_json(text, j, {.max_depth = depth}) || !j.is_object()) return "bad_json";
        try {
            return "ok " + kernex::message_header::from_json(j).to_json().dump();
        } catch (const kernex::error&) {
            return "bad_field";
        }
    };
    const auto ours = [](const std::string& text, std::size_t depth) -> std::string {
        kernex::message_header h;
        h.msg_id = "left over from the last message";
        switch (kernex::wire::read_header(text, depth, h)) {
        case kernex::wire::header_read::ok: return "ok " + h.to_json().dump();
        case kernex::wire::header_read::bad_field: return "bad_field";
        case kernex::wire::header_read::bad_json: return "bad_json";
        }
        return "?";
    };
    const std::vector<std::string> cases = {
        "", "{}", " { } ", "\xef\xbb\xbf{}", "[]", "null", "\"s\"", "{} {}", "{}x", "{\"msg_type\":\"a\"}",
        "{\"msg_type\":\"a\",\"msg_type\":3}", "{\"msg_type\":3,\"msg_type\":\"a\"}", "{\"msg_type\":null}",
        "{\"msg_type\":\"a\",}", "{\"msg_type\" \"a\"}", "{\"msg_type\":\"a\"", "{\"x\":[1,{\"y\":[]}],\"msg_type\":\"t\"}",
        "{\"session\":\"\\u00e9\\ud83d\\ude00\\n\",\"version\":\"5.3\"}", "{\"date\":\"bad \xff utf-8\"}",
        "{\"msg_id\":\"unterminated}", "{\"msg_id\":\"a\\x\"}", "{\"other\":1e400}", "{\"other\":NaN}",
        "{\"msg\\u005ftype\":\"escaped key\"}", "{\"username\":\"u\",\"subshell_id\":null,\"msg_type\":\"m\"}",
        "\n{\"msg_id\" : \"id\" ,\t\"msg_type\" : \"t\" }\r\n", std::string("{\"msg_type\":\"a\"}\0", 17),
    };
    for (const auto& text : cases)
        for (std::size_t depth : {0u, 1u, 2u, 3u, 1000u}) {
            CAPTURE(text);
            CAPTURE(depth);
            CHECK(ours(text, depth) == reference(text, depth));
        }
    // Random headers: known and unknown keys, repeated, with strings and
    // other values; then bytes changed, cut and doubled.
    static const char* const keys[] = {"msg_id", "session", "username", "date", "msg_type", "version", "other", "k0"};
    std::mt19937 rng(1707);
    std::size_t agreed[3] = {};
    for (int i = 0; i < 20000; ++i) {
        std::string text = "{";
        const int members = static_cast<int>(rng() % 8);
        for (int m = 0; m < members; ++m) {
            if (m) text += rng() % 2 ? "," : " , ";
            text += "\"" + std::string(keys[rng() % std::size(keys)]) + "\":";
            text += rng() % 3 ? "\"v" + std::to_string(rng() % 100) + (rng() % 4 ? "" : "\\n\\u00e9") + "\""
                              : random_json(rng, 1);
        }
        text += "}";
        if (i % 2) mutate(rng, text);
        CAPTURE(text);
        const std::size_t depth = 1 + rng() % 4;
        const std::string got = ours(text, depth);
        REQUIRE(got == reference(text, depth));
        agreed[got == "bad_json" ? 0 : got == "bad_field" ? 1 : 2] += 1;
    }
    // Every outcome was met many times.
    CHECK(agreed[0] > 1000);
    CHECK(agreed[1] > 1000);
    CHECK(agreed[2] > 1000);
}

TEST_CASE("a header is written as dump_json writes its to_json") {
    std::mt19937 rng(4242);
    static const char* const pieces[] = {"", "a", "5.3", "\"", "\\", "\n\t\x01", "\xc3\xa9", "\xf0\x9f\x98\x80", "\x7f",
                                         "2026-12-07T17:31:45.123456Z", "0123456789abcdef0123456789abcdef"};
    for (int i = 0; i < 2000; ++i) {
        kernex::message_header h;
        for (std::string* f : {&h.msg_id, &h.session, &h.username, &h.date, &h.msg_type, &h.version})
            for (int n = static_cast<int>(rng() % 4); n > 0; --n) *f += pieces[rng() % std::size(pieces)];
        std::string ours, theirs;
        kernex::wire::dump_header(h, ours);
        kernex::wire::dump_json(h.to_json(), theirs);
        CAPTURE(theirs);
        REQUIRE(ours == theirs);
    }
    kernex::message_header bad;
    bad.msg_type = "x";
    bad.session = "\xff";
    std::string out;
    CHECK_THROWS_AS(kernex::wire::dump_header(bad, out), kernex::error);
}

TEST_CASE("kernex's JSON writer writes what nlohmann's dump writes") {
    const auto ours = [](const json& j) {
        std::string out;
        kernex::wire::dump_json(j, out);
        return out;
    };
    std::string every_ascii;
    for (int c = 0; c < 0x80; ++c) every_ascii.push_back(static_cast<char>(c));
    const std::vector<json> values = {
        json(), true, false, 0, -1, 42u, 18446744073709551615ull, -9223372036854775807ll - 1, 0.1, -0.0, 1e300, 2.5,
        1.0, json::array(), json::object(), every_ascii, "h\xc3\xa9llo \xf0\x9f\x98\x80 \x7f",
        json{{"b", 1}, {"a", {1, "x\n", nullptr}}, {"\x01key\"", json::object()}},
        json::binary({1, 2, 3}, 7), std::string(100000, 'y') + "\n" + std::string(17, '"'),
    };
    for (const json& j : values) {
        CAPTURE(j.dump());
        CHECK(ours(j) == j.dump());
    }
    std::mt19937 rng(7);
    for (int i = 0; i < 5000; ++i) {
        const json j = json::parse(random_json(rng, 0));
        REQUIRE(ours(j) == j.dump());
    }
    CHECK_THROWS_AS(ours(json{{"a", "ok \xff"}}), kernex::error);
    CHECK_THROWS_AS(ours(json{{"\xc3", 1}}), kernex::error);
}

TEST_CASE("kernex's JSON parser: depth, long strings, numbers whatever the locale") {
    json j;
    const auto nested = [](std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
    CHECK(kernex::wire::parse_json(nested(5), j, {.max_depth = 5}));
    CHECK_FALSE(kernex::wire::parse_json(nested(6), j, {.max_depth = 5}));
    CHECK_FALSE(kernex::wire::parse_json(std::string(1 << 20, '['), j, {.max_depth = 1000}));
    // A string longer than every internal step, plain and escaped.
    std::string text(9 << 20, 'x');
    for (std::size_t i = 0; i < text.size(); i += 1000) text[i] = '\n';
    std::string escaped;
    for (char c : text) escaped += c == '\n' ? std::string("\\n") : std::string(1, c);
    REQUIRE(kernex::wire::parse_json("{\"t\":\"" + escaped + "\"}", j));
    CHECK(j["t"].get_ref<const std::string&>() == text);
    // Parsing never depends on the program's locale (a decimal comma).
    if (std::setlocale(LC_NUMERIC, "de_DE.UTF-8") || std::setlocale(LC_NUMERIC, "fr_FR.UTF-8")) {
        CHECK(kernex_reads("[2.5, 1e-400]") == std::optional<std::string>("[2.5,0.0]"));
        std::setlocale(LC_NUMERIC, "C");
    }
}

TEST_CASE("a text given up to the parser: the pages read are handed back, the value is whole") {
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t size = 32 << 20;
    void* mem = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(mem != MAP_FAILED);
    char* buf = static_cast<char*>(mem);
    const std::string head = "{\"name\":\"stdout\",\"text\":\"", tail = "\"}";
    std::memcpy(buf, head.data(), head.size());
    std::memset(buf + head.size(), 'y', size - head.size() - tail.size());
    for (std::size_t i = head.size() + 7; i + tail.size() < size; i += 4099) std::memcpy(buf + i, "\\n", 2);
    std::memcpy(buf + size - tail.size(), tail.data(), tail.size());
    const std::string expected_text = [&] {
        json reference = json::parse(std::string_view(buf, size));
        return reference["text"].get<std::string>();
    }();
    const auto resident_pages = [&] {
        std::vector<unsigned char> in_core(size / page);
        REQUIRE(::mincore(mem, size, in_core.data()) == 0);
        std::size_t n = 0;
        for (unsigned char c : in_core) n += c & 1;
        return n;
    };
    REQUIRE(resident_pages() == size / page);
    json j;
    REQUIRE(kernex::wire::parse_json(std::string_view(buf, size), j, {.release_read_pages = true}));
    CHECK(j["name"] == "stdout");
    CHECK(j["text"].get_ref<const std::string&>() == expected_text);
    // All but the first and last pages and the last step's went back.
    CHECK(resident_pages() < (8u << 20) / page);
    CHECK(buf[0] == '{');
    ::munmap(mem, size);
}

TEST_CASE("message helpers") {
    SUBCASE("new_id has jupyter_client's shape and is random") {
        const std::regex shape("[0-9a-f]{8}-[0-9a-f]{24}");
        std::set<std::string> ids;
        for (int i = 0; i < 1000; ++i) {
            std::string id = kernex::new_id();
            CHECK(std::regex_match(id, shape));
            ids.insert(std::move(id));
        }
        CHECK(ids.size() == 1000);
    }
    SUBCASE("utc_now_iso8601 has microseconds and Z, and is now") {
        const std::string now = kernex::utc_now_iso8601();
        CHECK(std::regex_match(now, std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)")));
        std::tm tm{};
        std::istringstream in(now);
        in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
        REQUIRE_FALSE(in.fail());
        const auto then = std::chrono::system_clock::from_time_t(timegm(&tm));
        CHECK(std::chrono::abs(std::chrono::system_clock::now() - then) < std::chrono::seconds(5));
    }
    SUBCASE("utc_now_iso8601 is the time it was called, across second boundaries") {
        // The text before the microseconds is kept from one call to the next
        // within a second: it must never be the last second's.
        const auto parse = [](const std::string& text) {
            std::tm tm{};
            std::istringstream in(text.substr(0, 19));
            in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
            REQUIRE_FALSE(in.fail());
            return std::chrono::system_clock::from_time_t(timegm(&tm)) + std::chrono::microseconds(std::stol(text.substr(20, 6)));
        };
        const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(2100);
        int seconds_seen = 0;
        std::string last;
        while (std::chrono::steady_clock::now() < end) {
            const auto before = std::chrono::floor<std::chrono::microseconds>(std::chrono::system_clock::now());
            const std::string now = kernex::utc_now_iso8601();
            const auto after = std::chrono::system_clock::now();
            REQUIRE(now.size() == 27);
            CAPTURE(now);
            const auto then = parse(now);
            REQUIRE(then >= before);
            REQUIRE(then <= after);
            if (now.substr(0, 19) != last.substr(0, std::min<std::size_t>(19, last.size()))) ++seconds_seen;
            last = now;
            std::this_thread::sleep_for(std::chrono::microseconds(300));
        }
        CHECK(seconds_seen >= 2);
    }
    SUBCASE("make_request and make_reply") {
        message req = kernex::make_request("kernel_info_request", json::object(), "sess-1", "alice");
        req.identities = {"route"};
        CHECK(req.header.msg_type == "kernel_info_request");
        CHECK(req.header.session == "sess-1");
        CHECK(req.header.username == "alice");
        CHECK(req.header.version == "5.3");
        CHECK_FALSE(req.header.msg_id.empty());
        CHECK(req.parent_header.empty());
        CHECK(req.parent_header.to_json() == json::object());

        const message rep = kernex::make_reply(req, "kernel_info_reply", {{"status", "ok"}});
        CHECK(rep.header.session == "sess-1");
        CHECK(rep.header.username == "kernex");
        CHECK(rep.header.msg_id != req.header.msg_id);
        CHECK(rep.parent_header.to_json() == req.header.to_json());
        CHECK(rep.identities == req.identities);
        CHECK(rep.content["status"] == "ok");
    }
    SUBCASE("header from_json") {
        CHECK_THROWS_AS(kernex::message_header::from_json(json::array()), kernex::error);
        CHECK(kernex::message_header::from_json(json::object()).empty());
        const auto h = kernex::message_header::from_json({{"msg_type", "a"}, {"extra", 1}});
        CHECK(h.msg_type == "a");
        CHECK(h.msg_id.empty());
    }
}

TEST_CASE("kernex's own SHA-256 is OpenSSL's, at every length around the block and padding edges") {
    CHECK(to_hex(std::string_view(reinterpret_cast<const char*>(kernex::detail::sha256("").data()), 32)) ==
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(to_hex(std::string_view(reinterpret_cast<const char*>(kernex::detail::sha256("abc").data()), 32)) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    std::mt19937 rng(17);
    for (std::size_t n = 0; n < 300; ++n) {
        std::string data(n, '\0');
        for (char& c : data) c = static_cast<char>(rng());
        unsigned char expected[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        REQUIRE(EVP_Digest(data.data(), data.size(), expected, &len, EVP_sha256(), nullptr) == 1);
        CAPTURE(n);
        const auto ours = kernex::detail::sha256(data);
        CHECK(std::string_view(reinterpret_cast<const char*>(ours.data()), ours.size()) ==
              std::string_view(reinterpret_cast<const char*>(expected), len));
    }
    CHECK(kernex::detail::same_secret("token-1", "token-1"));
    CHECK_FALSE(kernex::detail::same_secret("token-1", "token-2"));
    CHECK_FALSE(kernex::detail::same_secret("token-1", "token-10"));
    CHECK_FALSE(kernex::detail::same_secret("", "x"));
}
