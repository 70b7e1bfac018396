// Encoding messages into signed frames and verifying received ones. Decoding
// checks everything that costs little and needs no parsing first (size, frame
// count, delimiter, signature form, HMAC, replay), so a peer without the key
// never gets its bytes into the JSON parser.
#include <algorithm>
#include <iterator>

#include "kernex/error.hpp"
#include "kernex/message.hpp"
#include "wire/hex.hpp"
#include "wire/json_text.hpp"
#include "wire/replay_guard.hpp"

namespace kernex {

namespace {

// After the delimiter: signature, header, parent_header, metadata, content.
constexpr std::size_t signed_frames = 5;

// A signed part's text, as write(text) appends it; the part is named in
// the error for a string that is not UTF-8.
template <class Write>
std::string dump_part(std::string_view part, Write write) {
    try {
        std::string text;
        write(text);
        return text;
    } catch (const std::exception& e) {
        throw error(errc::invalid_argument, "cannot encode the message " + std::string(part) + ": " + e.what() +
                                                " (every string must be valid UTF-8)");
    }
}

std::string dump_part(const json& j, std::string_view part) {
    // jupyter_client sends {} for a missing content; null metadata is the
    // same absence.
    if (j.is_null()) return "{}";
    return dump_part(part, [&](std::string& text) { wire::dump_json(j, text); });
}

std::string dump_part(const message_header& h, std::string_view part) {
    return dump_part(part, [&](std::string& text) { wire::dump_header(h, text); });
}

}  // namespace

struct frame_codec::impl {
    kernex::signer m_signer;
    codec_options m_options;
    wire::replay_guard m_guard;
    reject_counters m_counters;

    impl(std::string key, std::string_view scheme, codec_options options)
        : m_signer(std::move(key), scheme),
          m_options(options),
          m_guard(options.replay_history, m_signer.hex_length() / 2) {}

    // Appends the delimiter, the signature and the four signed parts of msg.
    void append_signed(const message& msg, std::vector<std::string>& frames) const {
        frames.emplace_back(delimiter);
        const std::size_t sig = frames.size();
        frames.emplace_back();
        frames.push_back(dump_part(msg.header, "header"));
        frames.push_back(dump_part(msg.parent_header, "parent_header"));
        frames.push_back(dump_part(msg.metadata, "metadata"));
        frames.push_back(dump_part(msg.content, "content"));
        frames[sig] = m_signer.sign({frames[sig + 1], frames[sig + 2], frames[sig + 3], frames[sig + 4]});
    }

    bool reject(reject_reason r, reject_reason* why) noexcept {
        ++m_counters.by_reason[static_cast<std::size_t>(r)];
        if (why) *why = r;
        return false;
    }

    // The checks that need no parsing; nullopt when the frames pass them.
    std::optional<reject_reason> verify(std::span<const std::string_view> frames, std::size_t& delim);

    // Verifies and parses frames into msg (whose strings' storage is
    // reused); put(dst, i) gives frame i to the string dst (moved or
    // copied), for the identities and buffers.
    template <class Put>
    bool decode(std::span<const std::string_view> frames, message& msg, reject_reason* why, bool disposable, Put put);
};

std::optional<reject_reason> frame_codec::impl::verify(std::span<const std::string_view> frames, std::size_t& delim) {
    std::size_t total = 0;
    for (const std::string_view f : frames) total += f.size();
    if (total > m_options.max_message_bytes) return reject_reason::oversized;
    if (frames.size() < 1 + signed_frames) return reject_reason::too_few_frames;

    // The first delimiter ends the identities, as in jupyter_client.
    delim = static_cast<std::size_t>(std::find(frames.begin(), frames.end(), delimiter) - frames.begin());
    if (delim == frames.size()) return reject_reason::no_delimiter;
    if (frames.size() - delim - 1 < signed_frames) return reject_reason::too_few_frames;

    // Unsigned sessions check nothing more, as jupyter_client does without a
    // key; every message would carry the same empty signature, so there is
    // nothing for a replay guard to tell apart either.
    if (!m_signer.enabled()) return std::nullopt;
    const std::string_view signature = frames[delim + 1];
    if (signature.size() != m_signer.hex_length()) return reject_reason::bad_signature_length;
    // Decoded once, for the comparison and for the replay guard.
    wire::digest_bytes digest;
    const std::size_t n = m_signer.hex_length() / 2;
    if (!wire::decode_hex(signature, digest.data(), n)) return reject_reason::bad_signature_hex;
    // The guard's table is large: its slot for this signature is fetched
    // from memory while the HMAC is computed.
    m_guard.prefetch(std::string_view(reinterpret_cast<const char*>(digest.data()), n));
    if (!m_signer.verify_digest(digest.data(), {frames[delim + 2], frames[delim + 3], frames[delim + 4], frames[delim + 5]}))
        return reject_reason::bad_signature;

    // Only authentic signatures are remembered: were forged ones recorded
    // (jupyter_client records before it compares), a flood of them would push
    // real signatures out of the history and reopen them to replay. An
    // authentic message is remembered even if its JSON turns out bad: it was
    // delivered once, and a second copy is a replay whatever it contains.
    if (!m_guard.admit(std::string_view(reinterpret_cast<const char*>(digest.data()), n))) return reject_reason::replayed;
    return std::nullopt;
}

frame_codec::frame_codec(std::string key, std::string_view scheme, codec_options options)
    : m_impl(std::make_unique<impl>(std::move(key), scheme, options)) {}

frame_codec::~frame_codec() = default;
frame_codec::frame_codec(frame_codec&&) noexcept = default;
frame_codec& frame_codec::operator=(frame_codec&&) noexcept = default;

std::vector<std::string> frame_codec::encode(const message& msg) const {
    std::vector<std::string> frames;
    frames.reserve(msg.identities.size() + 1 + signed_frames + msg.buffers.size());
    frames.insert(frames.end(), msg.identities.begin(), msg.identities.end());
    m_impl->append_signed(msg, frames);
    frames.insert(frames.end(), msg.buffers.begin(), msg.buffers.end());
    return frames;
}

std::vector<std::string> frame_codec::encode(message&& msg) const {
    std::vector<std::string> frames;
    frames.reserve(msg.identities.size() + 1 + signed_frames + msg.buffers.size());
    std::move(msg.identities.begin(), msg.identities.end(), std::back_inserter(frames));
    m_impl->append_signed(msg, frames);
    std::move(msg.buffers.begin(), msg.buffers.end(), std::back_inserter(frames));
    return frames;
}

template <class Put>
bool frame_codec::impl::decode(std::span<const std::string_view> frames, message& msg, reject_reason* why,
                               bool disposable, Put put) {
    std::size_t delim = 0;
    if (const auto failed = verify(frames, delim)) return reject(*failed, why);

    // The headers are read straight into the message's fields; only the
    // metadata and the content become JSON values.
    bool bad_field = false;
    for (std::size_t i = 0; i < 2; ++i) {
        switch (wire::read_header(frames[delim + 2 + i], m_options.max_json_depth, i == 0 ? msg.header : msg.parent_header)) {
        case wire::header_read::ok: break;
        case wire::header_read::bad_field: bad_field = true; break;
        case wire::header_read::bad_json: return reject(reject_reason::bad_json, why);
        }
    }
    for (std::size_t i = 2; i < 4; ++i) {
        json& part = i == 2 ? msg.metadata : msg.content;
        // Only the content can be large; its pages go back as it is read
        // when the caller gives the frame up.
        if (!wire::parse_json(frames[delim + 2 + i], part,
                              {.max_depth = m_options.max_json_depth, .release_read_pages = disposable && i == 3}))
            return reject(reject_reason::bad_json, why);
        // A null metadata is an empty one (xeus-python 0.14 sends null for a
        // comm message's metadata of None; jupyter_client takes it).
        if (i == 2 && part.is_null()) part = json::object();
        if (!part.is_object()) return reject(reject_reason::bad_json, why);
    }
    if (bad_field || msg.header.msg_type.empty()) return reject(reject_reason::bad_header, why);

    msg.identities.resize(delim);
    for (std::size_t i = 0; i < delim; ++i) put(msg.identities[i], i);
    msg.buffers.resize(frames.size() - delim - 1 - signed_frames);
    for (std::size_t i = delim + 1 + signed_frames; i < frames.size(); ++i)
        put(msg.buffers[i - delim - 1 - signed_frames], i);
    return true;
}

std::optional<message> frame_codec::decode(std::vector<std::string>&& frames, reject_reason* why) {
    std::vector<std::string_view> views(frames.begin(), frames.end());
    message msg;
    if (!m_impl->decode(views, msg, why, false, [&](std::string& dst, std::size_t i) { dst = std::move(frames[i]); }))
        return std::nullopt;
    return msg;
}

std::optional<message> frame_codec::decode_view(std::span<const std::string_view> frames, reject_reason* why,
                                                bool frames_disposable) {
    message msg;
    if (!decode_view_into(frames, msg, why, frames_disposable)) return std::nullopt;
    return msg;
}

bool frame_codec::decode_view_into(std::span<const std::string_view> frames, message& out, reject_reason* why,
                                   bool frames_disposable) {
    return m_impl->decode(frames, out, why, frames_disposable,
                          [&](std::string& dst, std::size_t i) { dst.assign(frames[i]); });
}

const reject_counters& frame_codec::rejected() const noexcept { return m_impl->m_counters; }

const signer& frame_codec::sign() const noexcept { return m_impl->m_signer; }

}  // namespace kernex
