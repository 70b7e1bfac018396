// The replay guard: a bounded memory of recently accepted signatures
// (internal to the wire module).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace kernex::wire {

// Remembers the last `capacity` keys (raw HMAC digests, all of one length).
// When full, the oldest key is forgotten. jupyter_client instead drops a
// random 10% once it exceeds its digest_history_size; evicting the oldest
// keeps the memory bounded by exactly `capacity`, costs O(1) per message and
// keeps the most recent signatures, which are the likeliest to be replayed.
//
// Every message passes through admit, so it allocates nothing (but for the
// table's doublings): the keys sit in a ring, and an open-addressing table
// (linear probing, at most half full) holds each key's ring slot beside 32
// bits of its hash, so that a probe rarely has to read the ring. The table
// starts small and doubles as keys arrive, up to twice the capacity: a
// session's first thousands of messages find it in the cache rather than
// spread over a megabyte of pages each touched for the first time. Hashes
// are keyed with a random seed: a peer that holds the session key (code in
// the kernel may) cannot grind signatures that pile up in one stretch of the
// table.
class replay_guard {
public:
    // capacity 0 disables the guard (as digest_history_size = 0 does).
    // Throws kernex::error(invalid_argument) for an absurd capacity.
    replay_guard(std::size_t capacity, std::size_t key_length);

    // Returns false when key is remembered (a replay). Otherwise remembers it
    // and returns true. key must be key_length bytes.
    bool admit(std::string_view key);

    // Starts loading the table's slot for key into the cache, so that an
    // admit after other work (the HMAC) does not wait for memory.
    void prefetch(std::string_view key) const noexcept;

    std::size_t size() const noexcept { return m_count; }

private:

    std::uint64_t hash(const char* key) const noexcept;
    std::size_t home(std::uint64_t entry) const noexcept { return static_cast<std::size_t>(entry >> 32) >> m_shift; }
    const char* key_at(std::uint64_t entry) const noexcept {
        return m_ring.get() + (static_cast<std::size_t>(entry & 0xffffffffu) - 1) * m_key_length;
    }
    // Removes the table's entry for ring slot `slot` (whose key is there).
    void forget(std::size_t slot);
    // Makes the table `slots` slots (a power of two) and puts the entries back.
    void resize(std::size_t slots);

    std::size_t m_capacity;
    std::size_t m_key_length;
    // capacity * key_length bytes, a ring of keys. Allocated up front but not
    // initialised, so pages are only touched as the history fills.
    std::unique_ptr<char[]> m_ring;
    std::size_t m_next = 0;   // ring slot the next key goes to (the oldest once full)
    std::size_t m_count = 0;  // keys remembered
    // Entries: the upper 32 bits of the key's hash, then its ring slot + 1
    // (0: empty).
    std::unique_ptr<std::uint64_t[]> m_table;
    std::size_t m_max_slots = 0;  // the table's final size
    std::size_t m_mask = 0;      // table size - 1 (a power of two)
    unsigned m_shift = 0;        // upper hash bits >> m_shift = home slot
    std::uint64_t m_seed = 0;
};

}  // namespace kernex::wire
