// The replay guard: a bounded memory of recently accepted signatures
// (internal to the wire module).
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <unordered_set>

namespace kernex::wire {

// Remembers the last `capacity` keys (raw HMAC digests, all of one length).
// When full, the oldest key is forgotten. jupyter_client instead drops a
// random 10% once it exceeds its digest_history_size; evicting the oldest
// keeps the memory bounded by exactly `capacity`, costs O(1) per message and
// keeps the most recent signatures, which are the likeliest to be replayed.
class replay_guard {
public:
    // capacity 0 disables the guard (as digest_history_size = 0 does).
    // Throws kernex::error(invalid_argument) for an absurd capacity.
    replay_guard(std::size_t capacity, std::size_t key_length);

    // Returns false when key is remembered (a replay). Otherwise remembers it
    // and returns true.
    bool admit(std::string_view key);

    std::size_t size() const noexcept { return m_seen.size(); }

private:
    std::size_t m_capacity;
    std::size_t m_key_length;
    // capacity * key_length bytes, a ring of keys. Allocated up front but not
    // initialised, so pages are only touched as the history fills.
    std::unique_ptr<char[]> m_ring;
    std::size_t m_next = 0;  // ring slot the next key goes to (the oldest once full)
    // Views into m_ring; the ring never moves, so they stay valid.
    std::unordered_set<std::string_view> m_seen;
};

}  // namespace kernex::wire
