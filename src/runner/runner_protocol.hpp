// The resident runner's wire format, shared by the runner program
// (runner.cpp, static, dependency-free: this header uses only <cstdint> and
// <cstring>) and kernex's side of the conversation (runner_client.cpp).
//
// The runner is started once per executor session (inside the bubblewrap
// sandbox, or as a Docker container's pid 1) and runs one block at a time.
// It talks over its stdin (requests) and stdout (replies); in a container
// those are the attached stream. Everything is a frame:
//
//     type : 1 byte    one of the frame_type letters below
//     size : 4 bytes   payload length, little-endian, at most max_payload
//     payload : size bytes
//
// kernex -> runner
//   'R' run      u32 timeout_ms (0: none), u32 flags (bit 0: stderr into the
//                stdout pipe, in arrival order; bit 1: the runner's own
//                environment under the request's, as a Docker exec has the
//                container's), u32 rlimit count, then per
//                limit u32 resource + u64 value (soft = hard), then strings:
//                cwd, scrub_dir ("" : none; a dir emptied after the block),
//                u32 argc + argc strings (argv[0] absolute, or searched on
//                the env's PATH), u32 envc + envc "NAME=VALUE" strings.
//                A string is u32 length + bytes, no NUL inside.
//   'C' cancel   (empty) kill the running block now; ignored between blocks.
//   'W' write    u32 mode, strings dir, name, then the file's bytes (the
//                rest): a new file at name beneath dir (files "copy": a
//                block's code file in the container), made as confine's
//                create_beneath makes files on the host: each dir on the
//                way opened with O_NOFOLLOW (made 0700 when missing), what
//                stands at the name unlinked (never opened) and the file
//                created O_EXCL. Answered by one 'D'. Between blocks only.
//   'P' pack     u64 max file bytes, strings dir, top: a tar of dir (every
//                entry named top/...: regular files with their bytes, dirs,
//                and symlinks, FIFOs and devices as bare headers, none of
//                them followed; files past max file bytes, summed in walk
//                order, left out and counted), sent as 'T' frames and ended
//                by one 'D' whose count is the bytes left out. Between
//                blocks only.
// runner -> kernex
//   'H' hello    "kernex-runner/1", once, when ready for requests.
//   'O' stdout   bytes the block wrote (at most chunk_size per frame).
//   'E' stderr   bytes written to its stderr (when not merged).
//   'X' exit     u8 how (exit_how), i32 value (exit code, signal number or
//                errno), u8 cleaned (1: every process the block started is
//                dead and reaped), then a message (text, may be empty).
//                Sent once per 'R', after the cleanup.
//   'T' tar      bytes of the tar a 'P' asked for (at most chunk_size per frame).
//   'D' done     u8 ok (1) or failed (0), i32 errno, u64 count, then a
//                message (text, may be empty): the answer to a 'W' or a 'P'.
//
// The block never holds the runner's stdin or stdout: its stdin is
// /dev/null, its stdout and stderr are pipes the runner reads, every other
// fd is closed, and the runner is not dumpable (its /proc/<pid>/fd cannot be
// opened by the code). Still, kernex treats every byte from the runner as
// hostile: sizes are checked before anything is allocated, a frame of an
// unknown type or a reply out of turn ends the session.
#pragma once

#include <cstdint>
#include <cstring>

namespace kernex::runner_protocol {

inline constexpr char hello_text[] = "kernex-runner/1";
inline constexpr std::uint32_t max_payload = 1u << 20;   // a request's or a reply's largest payload
inline constexpr std::uint32_t chunk_size = 64u * 1024;  // output bytes per 'O'/'E' frame
inline constexpr std::size_t header_size = 5;

enum frame_type : char {
    run = 'R',
    cancel = 'C',
    write = 'W',
    pack = 'P',
    hello = 'H',
    out = 'O',
    err = 'E',
    exit = 'X',
    tar = 'T',
    done = 'D',
};

enum class exit_how : std::uint8_t {
    exited = 0,       // value: exit code
    signaled = 1,     // value: signal number
    timed_out = 2,    // the request's timeout passed: killed
    cancelled = 3,    // a 'C' came: killed
    not_started = 4,  // value: errno of the step the message names
};

inline constexpr std::uint32_t flag_merge_stderr = 1;
inline constexpr std::uint32_t flag_inherit_env = 2;

inline void put_u32(unsigned char* at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) at[i] = static_cast<unsigned char>(v >> (8 * i));
}
inline std::uint32_t get_u32(const unsigned char* at) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(at[i]) << (8 * i);
    return v;
}
inline void put_u64(unsigned char* at, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) at[i] = static_cast<unsigned char>(v >> (8 * i));
}
inline std::uint64_t get_u64(const unsigned char* at) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(at[i]) << (8 * i);
    return v;
}

// Reads fields out of a payload; every read is checked against its end.
// After the first read that does not fit, ok() is false and every read
// returns zero/empty.
class reader {
public:
    reader(const unsigned char* data, std::size_t size) : m_at(data), m_end(data + size) {}
    bool ok() const { return m_ok; }
    bool at_end() const { return m_at == m_end; }
    std::size_t left() const { return static_cast<std::size_t>(m_end - m_at); }
    std::uint8_t u8() {
        if (!need(1)) return 0;
        return *m_at++;
    }
    std::uint32_t u32() {
        if (!need(4)) return 0;
        const auto v = get_u32(m_at);
        m_at += 4;
        return v;
    }
    std::uint64_t u64() {
        if (!need(8)) return 0;
        const auto v = get_u64(m_at);
        m_at += 8;
        return v;
    }
    // A string: where it starts and how long, or nullptr.
    const char* string(std::uint32_t& length) {
        length = u32();
        if (!m_ok || !need(length)) {
            length = 0;
            return nullptr;
        }
        const char* s = reinterpret_cast<const char*>(m_at);
        if (std::memchr(s, 0, length)) {
            m_ok = false;
            length = 0;
            return nullptr;
        }
        m_at += length;
        return s;
    }
    const char* rest(std::size_t& length) {
        length = left();
        const char* s = reinterpret_cast<const char*>(m_at);
        m_at = m_end;
        return s;
    }

private:
    bool need(std::size_t n) {
        if (!m_ok || static_cast<std::size_t>(m_end - m_at) < n) {
            m_ok = false;
            m_at = m_end;
            return false;
        }
        return true;
    }
    const unsigned char* m_at;
    const unsigned char* m_end;
    bool m_ok = true;
};

}  // namespace kernex::runner_protocol
