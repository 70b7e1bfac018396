#include "wire/replay_guard.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "kernex/error.hpp"
#include "wire/random_bytes.hpp"

namespace kernex::wire {

namespace {
// Far beyond any sensible history (jupyter_client keeps 65536), and small
// enough that capacity * key_length cannot overflow or exhaust memory, and
// that a ring slot and a home slot fit in 32 bits.
constexpr std::size_t max_capacity = std::size_t{1} << 24;
}  // namespace

replay_guard::replay_guard(std::size_t capacity, std::size_t key_length)
    : m_capacity(key_length == 0 ? 0 : capacity), m_key_length(key_length) {
    if (m_capacity > max_capacity)
        throw error(errc::invalid_argument,
                    "replay_history " + std::to_string(capacity) + " is too large; use at most " +
                        std::to_string(max_capacity) + " (the default is 65536)");
    if (m_capacity == 0) return;
    m_ring = std::make_unique_for_overwrite<char[]>(m_capacity * m_key_length);
    m_max_slots = std::bit_ceil(2 * m_capacity);
    resize(std::min<std::size_t>(m_max_slots, 1024));
    detail::random_bytes(&m_seed, sizeof m_seed, "the replay guard's hash seed");
}

void replay_guard::resize(std::size_t slots) {
    auto old = std::move(m_table);
    const std::size_t old_slots = old ? m_mask + 1 : 0;
    m_table = std::make_unique<std::uint64_t[]>(slots);
    m_mask = slots - 1;
    m_shift = 32 - static_cast<unsigned>(std::countr_zero(slots));
    for (std::size_t j = 0; j < old_slots; ++j) {
        if (old[j] == 0) continue;
        std::size_t i = home(old[j]);
        while (m_table[i] != 0) i = (i + 1) & m_mask;
        m_table[i] = old[j];
    }
}

void replay_guard::prefetch(std::string_view key) const noexcept {
    if (m_capacity == 0 || key.size() != m_key_length) return;
    __builtin_prefetch(&m_table[home(hash(key.data()))]);
}

std::uint64_t replay_guard::hash(const char* key) const noexcept {
    // Keys are HMAC digests: already uniform, so a keyed mix of their words
    // spreads them (and ones a peer ground to collide under one seed do not
    // collide under another).
    std::uint64_t h = m_seed;
    std::size_t i = 0;
    for (; i + 8 <= m_key_length; i += 8) {
        std::uint64_t word;
        std::memcpy(&word, key + i, 8);
        h = (h ^ word) * 0x9e3779b97f4a7c15u;
        h ^= h >> 29;
    }
    for (; i < m_key_length; ++i) {
        h = (h ^ static_cast<unsigned char>(key[i])) * 0x9e3779b97f4a7c15u;
        h ^= h >> 29;
    }
    return h;
}

bool replay_guard::admit(std::string_view key) {
    if (m_capacity == 0) return true;
    if (key.size() != m_key_length) return false;
    const std::uint64_t tag = hash(key.data()) & ~std::uint64_t{0xffffffffu};
    std::size_t i = home(tag);
    for (std::uint64_t e; (e = m_table[i]) != 0; i = (i + 1) & m_mask)
        if ((e & ~std::uint64_t{0xffffffffu}) == tag && std::memcmp(key_at(e), key.data(), m_key_length) == 0)
            return false;
    if (m_count == m_capacity) {
        forget(m_next);  // the oldest
    } else if (2 * ++m_count > m_mask + 1 && m_mask + 1 < m_max_slots) {
        resize(2 * (m_mask + 1));
    }
    // The first empty slot from home again: the probe above may have passed
    // a hole made since, or been in the smaller table.
    i = home(tag);
    while (m_table[i] != 0) i = (i + 1) & m_mask;
    std::memcpy(m_ring.get() + m_next * m_key_length, key.data(), m_key_length);
    m_table[i] = tag | static_cast<std::uint64_t>(m_next + 1);
    m_next = (m_next + 1) % m_capacity;
    return true;
}

void replay_guard::forget(std::size_t slot) {
    const char* key = m_ring.get() + slot * m_key_length;
    std::size_t i = home(hash(key));
    while ((m_table[i] & 0xffffffffu) != slot + 1) i = (i + 1) & m_mask;
    // Backward-shift deletion: entries after the hole that may move into it
    // (their home is not cyclically within (hole, position]) do, so every
    // key stays reachable from its home without tombstones.
    std::size_t j = i;
    for (;;) {
        m_table[i] = 0;
        for (;;) {
            j = (j + 1) & m_mask;
            if (m_table[j] == 0) return;
            const std::size_t k = home(m_table[j]);
            const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
            if (!stays) break;
        }
        m_table[i] = m_table[j];
        i = j;
    }
}

}  // namespace kernex::wire
