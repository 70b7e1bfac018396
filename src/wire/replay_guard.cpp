#include "wire/replay_guard.hpp"

#include <cstring>

#include "kernex/error.hpp"

namespace kernex::wire {

namespace {
// Far beyond any sensible history (jupyter_client keeps 65536), and small
// enough that capacity * key_length cannot overflow or exhaust memory.
constexpr std::size_t max_capacity = std::size_t{1} << 24;
}  // namespace

replay_guard::replay_guard(std::size_t capacity, std::size_t key_length)
    : m_capacity(key_length == 0 ? 0 : capacity), m_key_length(key_length) {
    if (m_capacity > max_capacity)
        throw error(errc::invalid_argument,
                    "replay_history " + std::to_string(capacity) + " is too large; use at most " +
                        std::to_string(max_capacity) + " (the default is 65536)");
    if (m_capacity != 0) m_ring = std::make_unique_for_overwrite<char[]>(m_capacity * m_key_length);
}

bool replay_guard::admit(std::string_view key) {
    if (m_capacity == 0) return true;
    if (m_seen.contains(key)) return false;
    char* slot = m_ring.get() + m_next * m_key_length;
    if (m_seen.size() == m_capacity) m_seen.erase(std::string_view(slot, m_key_length));
    std::memcpy(slot, key.data(), m_key_length);
    m_seen.insert(std::string_view(slot, m_key_length));
    m_next = (m_next + 1) % m_capacity;
    return true;
}

}  // namespace kernex::wire
