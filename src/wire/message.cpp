// The message model: headers, ids, timestamps, requests and replies.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "kernex/error.hpp"
#include "kernex/message.hpp"
#include "wire/header_fields.hpp"
#include "wire/hex.hpp"
#include "wire/random_bytes.hpp"

namespace kernex {

using wire::header_fields;

json message_header::to_json() const {
    json j = json::object();
    if (empty()) return j;
    for (const auto& [name, field] : header_fields) j[name] = this->*field;
    return j;
}

message_header message_header::from_json(const json& j) {
    if (!j.is_object()) throw error(errc::protocol_error, "a message header is not a JSON object");
    message_header h;
    for (const auto& [name, field] : header_fields) {
        const auto it = j.find(name);
        if (it == j.end()) continue;
        if (!it->is_string())
            throw error(errc::protocol_error,
                        std::string("the message header field \"") + name + "\" is not a string");
        h.*field = it->get_ref<const std::string&>();
    }
    return h;
}

std::string new_id() {
    unsigned char bytes[16];
    detail::random_bytes(bytes, sizeof bytes, "a message id");
    // jupyter_client's new_id(): the 16 bytes in hex, a dash after the fourth.
    std::string id;
    id.reserve(33);
    wire::append_hex(id, bytes, 4);
    id.push_back('-');
    wire::append_hex(id, bytes + 4, 12);
    return id;
}

std::string utc_now_iso8601() {
    using namespace std::chrono;
    const auto now = floor<microseconds>(system_clock::now());
    const auto second = floor<seconds>(now);
    // The text up to the seconds ("2026-11-29T14:22:11", 19 characters for
    // the years 0-9999) changes once a second: formatted then, and only the
    // microseconds after it for every message in between.
    thread_local sys_seconds cached_second{};
    thread_local char cached[19] = {};
    if (second != cached_second || cached[0] == '\0') {
        const auto day = floor<days>(second);
        const year_month_day ymd{day};
        const hh_mm_ss time{second - day};
        char text[64];
        const int n = std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02ld:%02ld:%02ld.%06ldZ",
                                    static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                                    static_cast<unsigned>(ymd.day()), static_cast<long>(time.hours().count()),
                                    static_cast<long>(time.minutes().count()),
                                    static_cast<long>(time.seconds().count()),
                                    static_cast<long>((now - second).count()));
        if (n != 27) return std::string(text, static_cast<std::size_t>(std::max(n, 0)));
        std::memcpy(cached, text, sizeof cached);
        cached_second = second;
    }
    char text[27];
    std::memcpy(text, cached, sizeof cached);
    text[19] = '.';
    auto us = static_cast<unsigned>((now - second).count());
    for (int i = 25; i >= 20; --i, us /= 10) text[i] = static_cast<char>('0' + us % 10);
    text[26] = 'Z';
    return std::string(text, sizeof text);
}

message make_request(std::string msg_type, json content, std::string_view session, std::string_view username) {
    message m;
    m.header.msg_id = new_id();
    m.header.session = session;
    m.header.username = username;
    m.header.date = utc_now_iso8601();
    m.header.msg_type = std::move(msg_type);
    m.header.version = protocol_version;
    m.content = std::move(content);
    return m;
}

message make_reply(const message& parent, std::string msg_type, json content, std::string_view username) {
    message m = make_request(std::move(msg_type), std::move(content), parent.header.session, username);
    m.identities = parent.identities;
    m.parent_header = parent.header;
    return m;
}

std::string_view to_string(reject_reason r) noexcept {
    switch (r) {
    case reject_reason::too_few_frames: return "too_few_frames";
    case reject_reason::no_delimiter: return "no_delimiter";
    case reject_reason::bad_signature_length: return "bad_signature_length";
    case reject_reason::bad_signature_hex: return "bad_signature_hex";
    case reject_reason::bad_signature: return "bad_signature";
    case reject_reason::replayed: return "replayed";
    case reject_reason::bad_json: return "bad_json";
    case reject_reason::bad_header: return "bad_header";
    case reject_reason::oversized: return "oversized";
    }
    return "unknown";
}

std::uint64_t reject_counters::total() const noexcept {
    std::uint64_t sum = 0;
    for (std::uint64_t n : by_reason) sum += n;
    return sum;
}

}  // namespace kernex
