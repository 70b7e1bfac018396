// The Jupyter message model (protocol 5.3) and its wire encoding.
//
// A message is a header, a parent header, metadata, content, binary buffers
// and the ZeroMQ routing identities it came with. frame_codec turns messages
// into signed multipart frames and back:
//   [identities..., "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]
// Received frames are verified before any JSON is parsed (frame count,
// delimiter, signature length and hex, constant-time HMAC comparison, replay
// guard); a rejected message is dropped and counted, never thrown.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

namespace kernex {

using json = nlohmann::json;

inline constexpr std::string_view protocol_version = "5.3";
inline constexpr std::string_view delimiter = "<IDS|MSG>";

struct message_header {
    std::string msg_id;
    std::string session;
    std::string username;
    std::string date;      // ISO 8601, UTC, microseconds: 2026-11-29T14:22:11.123456Z
    std::string msg_type;
    std::string version;   // "5.3" for messages kernex makes

    // An empty header (all fields empty) encodes as {} (a parent header of a request).
    bool empty() const noexcept { return msg_id.empty() && msg_type.empty(); }
    json to_json() const;
    // Reads the fields that are present; missing fields stay empty. Throws
    // kernex::error(protocol_error) when j is not an object or a field is not a string.
    static message_header from_json(const json& j);
};

struct message {
    std::vector<std::string> identities;  // ZeroMQ routing prefix (ROUTER peers)
    message_header header;
    message_header parent_header;
    json metadata = json::object();
    json content = json::object();
    std::vector<std::string> buffers;     // not covered by the signature

    const std::string& msg_type() const noexcept { return header.msg_type; }
};

// A new random id in jupyter_client's new_id() format: 16 random bytes as
// 32 lower-case hex digits with a dash after the eighth (not a dashed UUID4).
std::string new_id();
// The current UTC time as ISO 8601 with microseconds and a trailing Z.
std::string utc_now_iso8601();

// Returns a new request: fresh msg_id, the given session and username, now,
// version 5.3, empty parent header.
message make_request(std::string msg_type, json content, std::string_view session,
                     std::string_view username = "kernex");

// Returns a reply (or any child, e.g. an iopub message) of parent: same
// session and identities, parent_header = parent.header, fresh msg_id.
message make_reply(const message& parent, std::string msg_type, json content,
                   std::string_view username = "kernex");

// Why a received multipart message was dropped.
enum class reject_reason : std::uint8_t {
    too_few_frames,       // fewer than delimiter + signature + 4 parts
    no_delimiter,         // no "<IDS|MSG>" frame
    bad_signature_length, // signature is not the scheme's hex digest length
    bad_signature_hex,    // signature has non-hex characters
    bad_signature,        // HMAC mismatch (wrong key, tampered message)
    replayed,             // a signature seen before
    bad_json,             // a signed part is not valid JSON / not an object
    bad_header,           // header lacks msg_type or has non-string fields
    oversized,            // exceeds the configured maximum message size
};
inline constexpr std::size_t reject_reason_count = 9;
std::string_view to_string(reject_reason r) noexcept;

// Counts of rejected messages by reason.
struct reject_counters {
    std::array<std::uint64_t, reject_reason_count> by_reason{};
    std::uint64_t total() const noexcept;
    std::uint64_t operator[](reject_reason r) const noexcept {
        return by_reason[static_cast<std::size_t>(r)];
    }
};

// HMAC signer for a connection file's key and signature_scheme; the only code
// in kernex that signs (HMAC over OpenSSL's SHA-2, no allocation per message).
class signer {
public:
    // scheme: "hmac-sha256" or "hmac-sha512". An empty key means messages are
    // unsigned (empty signature), as the spec says. Throws
    // kernex::error(unsupported) for any other scheme (checked even when the
    // key is empty), naming the valid ones.
    explicit signer(std::string key = {}, std::string_view scheme = "hmac-sha256");
    ~signer();
    signer(signer&&) noexcept;
    signer& operator=(signer&&) noexcept;

    bool enabled() const noexcept;
    // Length in hex characters of a signature (64 or 128), 0 when disabled.
    std::size_t hex_length() const noexcept;
    // Lower-case hex HMAC over the concatenation of parts; "" when disabled.
    // Never throws but for memory.
    std::string sign(std::initializer_list<std::string_view> parts) const;
    // Constant-time comparison of a lower-case hex signature against the HMAC
    // of parts (upper case is refused, as jupyter_client refuses it). When
    // disabled, returns true for any signature, as jupyter_client does
    // without a key.
    bool verify(std::string_view hex_signature,
                std::initializer_list<std::string_view> parts) const;

private:
    // verify on a signature already decoded (hex_length() / 2 bytes): the
    // codec decodes it once, for this and for its replay guard.
    friend class frame_codec;
    bool verify_digest(const unsigned char* digest, std::initializer_list<std::string_view> parts) const;

    struct impl;
    std::unique_ptr<impl> m_impl;
};

struct codec_options {
    // Signatures remembered (jupyter_client's digest_history_size); the oldest
    // is forgotten when full; 0 disables the guard. At most 2^24.
    std::size_t replay_history = 1 << 16;
    std::size_t max_message_bytes = 256u << 20;    // sum of all frames; larger is rejected
    // Deepest nesting of arrays/objects in a part; deeper is bad_json (Python's
    // json gives up near 1000 too, and deep values overflow recursive code).
    std::size_t max_json_depth = 1000;
};

// Encodes and decodes signed multipart frames. Not thread-safe: one per socket
// owner thread (the replay guard is per codec).
class frame_codec {
public:
    // Throws kernex::error(unsupported) for an unknown scheme and
    // kernex::error(invalid_argument) for a replay_history above 2^24.
    explicit frame_codec(std::string key = {}, std::string_view scheme = "hmac-sha256",
                         codec_options options = {});
    ~frame_codec();
    frame_codec(frame_codec&&) noexcept;
    frame_codec& operator=(frame_codec&&) noexcept;

    // Returns the frames of msg, signed. A null metadata or content is sent as
    // {}. Throws kernex::error(invalid_argument) only on JSON that cannot be
    // serialised (invalid UTF-8 in a string).
    std::vector<std::string> encode(const message& msg) const;
    // The same, moving the identities and buffers into the frames.
    std::vector<std::string> encode(message&& msg) const;

    // Verifies then parses frames (the order of checks is in docs/wire.md).
    // Returns the message, or nullopt with *why set (when given) and the
    // counter for that reason incremented. Without a key, the signature is
    // not checked and no replay guard applies (as jupyter_client). Never
    // throws on anything a peer sends.
    std::optional<message> decode(std::vector<std::string>&& frames, reject_reason* why = nullptr);
    // The same, reading frames the caller holds (ZeroMQ's buffers, say)
    // rather than taking them; identities and buffers are copied out. With
    // frames_disposable the caller declares that it frees the frames after
    // this call without reading them again, and that each was allocated on
    // its own (not a slice of a buffer shared with anything else): the pages
    // of a large content frame already parsed are then handed back to the
    // system as parsing goes (madvise; they read as zeros afterwards), so
    // that a 100 MB output is never held twice.
    std::optional<message> decode_view(std::span<const std::string_view> frames, reject_reason* why = nullptr,
                                       bool frames_disposable = false);
    // decode_view into out, reusing the storage of its strings (a client
    // that reads message after message into one object allocates less).
    // Returns whether the message was accepted; after a rejection out holds
    // nothing to use (its fields are in a valid but unspecified state).
    bool decode_view_into(std::span<const std::string_view> frames, message& out, reject_reason* why = nullptr,
                          bool frames_disposable = false);

    const reject_counters& rejected() const noexcept;
    const signer& sign() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> m_impl;
};

}  // namespace kernex
