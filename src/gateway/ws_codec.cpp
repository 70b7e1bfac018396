// Encoding and decoding kernel websocket messages. Decoding checks the
// frame's structure before parsing JSON, bounds the JSON's depth (wire's
// parser) and never throws: a bad message is dropped and counted by the
// caller.
#include "gateway/ws_codec.hpp"

#include <cstdint>

#include "kernex/error.hpp"
#include "wire/json_text.hpp"

namespace kernex::gateway_detail {

namespace {

std::uint32_t be32(std::string_view data, std::size_t at) {
    auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(data[at + i])); };
    return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

void put_be32(std::string& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

// The header (or parent header) at key; false when present but malformed.
bool read_header(const json& j, const char* key, bool required, message_header& out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return !required;
    if (!it->is_object()) return false;
    try {
        out = message_header::from_json(*it);
    } catch (...) {
        return false;
    }
    return true;
}

}  // namespace

std::optional<channel> channel_named(std::string_view name) noexcept {
    if (name == "shell") return channel::shell;
    if (name == "iopub") return channel::iopub;
    if (name == "stdin") return channel::stdin_channel;
    if (name == "control") return channel::control;
    return std::nullopt;
}

std::optional<incoming> decode_ws_message(std::string_view data, bool binary, const codec_options& options,
                                          reject_reason& why) noexcept {
    try {
        if (data.size() > options.max_message_bytes) {
            why = reject_reason::oversized;
            return std::nullopt;
        }
        std::string_view text = data;
        std::vector<std::string> buffers;
        if (binary) {
            // Check every offset before slicing anything.
            if (data.size() < 4) {
                why = reject_reason::too_few_frames;
                return std::nullopt;
            }
            std::uint64_t n = be32(data, 0);
            if (n < 1 || 4 * (n + 1) > data.size()) {
                why = reject_reason::too_few_frames;
                return std::nullopt;
            }
            std::vector<std::size_t> offsets;
            for (std::uint64_t i = 0; i < n; ++i) {
                std::size_t off = be32(data, static_cast<std::size_t>(4 * (i + 1)));
                if (off < 4 * (n + 1) || off > data.size() || (!offsets.empty() && off < offsets.back())) {
                    why = reject_reason::too_few_frames;
                    return std::nullopt;
                }
                offsets.push_back(off);
            }
            offsets.push_back(data.size());
            text = data.substr(offsets[0], offsets[1] - offsets[0]);
            for (std::size_t i = 1; i < n; ++i)
                buffers.emplace_back(data.substr(offsets[i], offsets[i + 1] - offsets[i]));
        }
        json j;
        if (!wire::parse_object(text, options.max_json_depth, j)) {
            why = reject_reason::bad_json;
            return std::nullopt;
        }
        incoming in;
        auto ch = j.find("channel");
        std::optional<channel> named;
        if (ch != j.end() && ch->is_string()) named = channel_named(ch->get_ref<const std::string&>());
        if (!named || !read_header(j, "header", true, in.message.header) || in.message.header.msg_type.empty() ||
            !read_header(j, "parent_header", false, in.message.parent_header)) {
            why = reject_reason::bad_header;
            return std::nullopt;
        }
        in.channel = *named;
        auto content = j.find("content");
        if (content == j.end() || !content->is_object()) {
            why = reject_reason::bad_json;
            return std::nullopt;
        }
        in.message.content = std::move(*content);
        if (auto md = j.find("metadata"); md != j.end() && md->is_object()) in.message.metadata = std::move(*md);
        in.message.buffers = std::move(buffers);
        return in;
    } catch (...) {
        // Allocation failure or a nlohmann edge case: a dropped message, not a crash.
        why = reject_reason::bad_json;
        return std::nullopt;
    }
}

ws_payload encode_ws_message(channel ch, const message& msg) {
    json j = {{"channel", std::string(to_string(ch))},
              {"header", msg.header.to_json()},
              {"parent_header", msg.parent_header.to_json()},
              {"metadata", msg.metadata.is_null() ? json::object() : msg.metadata},
              {"content", msg.content.is_null() ? json::object() : msg.content}};
    std::string text;
    try {
        if (msg.buffers.empty()) j["buffers"] = json::array();
        text = j.dump();
    } catch (const json::exception& e) {
        throw error(errc::invalid_argument, std::string("cannot encode the message as JSON: ") + e.what());
    }
    if (msg.buffers.empty()) return {std::move(text), false};
    auto n = static_cast<std::uint32_t>(msg.buffers.size() + 1);
    std::uint64_t total = 4ull * (n + 1) + text.size();
    for (const auto& b : msg.buffers) total += b.size();
    // Offsets are 32-bit: the protocol caps such a message at 4 GiB.
    if (total > 0xffffffffull) throw error(errc::invalid_argument, "a message with buffers must be under 4 GiB on a websocket");
    ws_payload out{{}, true};
    out.data.reserve(static_cast<std::size_t>(total));
    put_be32(out.data, n);
    std::uint64_t offset = 4ull * (n + 1);
    put_be32(out.data, static_cast<std::uint32_t>(offset));
    offset += text.size();
    for (const auto& b : msg.buffers) {
        put_be32(out.data, static_cast<std::uint32_t>(offset));
        offset += b.size();
    }
    out.data += text;
    for (const auto& b : msg.buffers) out.data += b;
    return out;
}

}  // namespace kernex::gateway_detail
