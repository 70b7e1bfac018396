// The runner's frames on kernex's side: encoding requests, decoding what the
// runner sends (hostile: see runner_client.hpp). Pure functions, no I/O:
// the fuzz target fuzz_runner_frames runs them alone.
#include <algorithm>
#include <cstring>

#include "kernex/error.hpp"
#include "runner/runner_client.hpp"

namespace kernex::detail {

namespace proto = runner_protocol;

namespace {

void put_u32(std::string& out, std::uint32_t v) {
    unsigned char b[4];
    proto::put_u32(b, v);
    out.append(reinterpret_cast<const char*>(b), 4);
}

void put_string(std::string& out, const std::string& s) {
    if (s.find('\0') != std::string::npos)
        throw error(errc::invalid_argument, "a block's argument, environment or directory holds a NUL byte");
    put_u32(out, static_cast<std::uint32_t>(s.size()));
    out += s;
}

std::string frame_of(char type, const std::string& payload) {
    if (payload.size() > proto::max_payload)
        throw error(errc::invalid_argument, "a block's command line and environment exceed " +
                                                std::to_string(proto::max_payload) + " bytes");
    std::string f(1, type);
    put_u32(f, static_cast<std::uint32_t>(payload.size()));
    return f + payload;
}

}  // namespace

std::string encode_run_request(const runner_request& r) {
    if (r.argv.empty()) throw error(errc::invalid_argument, "a block needs a program to run");
    if (r.rlimits.size() > 16) throw error(errc::invalid_argument, "at most 16 rlimits per block");
    std::string p;
    const auto ms = r.timeout.count();
    put_u32(p, static_cast<std::uint32_t>(ms <= 0 ? 0 : std::min<long long>(ms, 0xffffffffLL)));
    put_u32(p, (r.merge_stderr ? proto::flag_merge_stderr : 0) | (r.inherit_env ? proto::flag_inherit_env : 0));
    put_u32(p, static_cast<std::uint32_t>(r.rlimits.size()));
    for (const auto& [resource, value] : r.rlimits) {
        put_u32(p, static_cast<std::uint32_t>(resource));
        unsigned char b[8];
        proto::put_u64(b, value);
        p.append(reinterpret_cast<const char*>(b), 8);
    }
    put_string(p, r.cwd);
    put_string(p, r.scrub_dir);
    put_u32(p, static_cast<std::uint32_t>(r.argv.size()));
    for (const auto& a : r.argv) put_string(p, a);
    put_u32(p, static_cast<std::uint32_t>(r.env.size()));
    for (const auto& e : r.env) put_string(p, e);
    return frame_of(proto::run, p);
}

std::string encode_cancel() { return frame_of(proto::cancel, {}); }

std::string encode_write_request(const std::string& dir, const std::string& name, std::string_view content,
                                 unsigned mode) {
    std::string p;
    p.reserve(12 + dir.size() + name.size() + content.size());
    put_u32(p, mode & 0777);
    put_string(p, dir);
    put_string(p, name);
    p.append(content);
    return frame_of(proto::write, p);
}

std::string encode_pack_request(const std::string& dir, const std::string& top, std::uint64_t max_file_bytes) {
    std::string p;
    unsigned char b[8];
    proto::put_u64(b, max_file_bytes);
    p.append(reinterpret_cast<const char*>(b), 8);
    put_string(p, dir);
    put_string(p, top);
    return frame_of(proto::pack, p);
}

bool runner_frame_decoder::feed(std::string_view bytes) {
    if (broken()) return false;
    // What was consumed is dropped before more is kept: the buffer holds at
    // most one frame and what arrived with it.
    if (m_at > 0 && (m_at == m_buffer.size() || m_at > (1u << 16))) {
        m_buffer.erase(0, m_at);
        m_at = 0;
    }
    m_buffer.append(bytes);
    return true;
}

std::optional<runner_frame> runner_frame_decoder::next() {
    if (broken() || pending() < proto::header_size) return std::nullopt;
    const auto* head = reinterpret_cast<const unsigned char*>(m_buffer.data() + m_at);
    const char type = static_cast<char>(head[0]);
    if (type != proto::hello && type != proto::out && type != proto::err && type != proto::exit && type != proto::tar &&
        type != proto::done) {
        m_why = "the runner sent a frame of unknown type " + std::to_string(static_cast<unsigned char>(type));
        return std::nullopt;
    }
    const std::uint32_t size = proto::get_u32(head + 1);
    const std::uint32_t limit =
        (type == proto::out || type == proto::err || type == proto::tar) ? proto::chunk_size : 4096;
    if (size > limit) {
        m_why = "the runner sent a frame of " + std::to_string(size) + " bytes (at most " + std::to_string(limit) +
                ")";
        return std::nullopt;
    }
    if (pending() - proto::header_size < size) return std::nullopt;
    runner_frame f;
    f.type = type;
    f.payload.assign(m_buffer, m_at + proto::header_size, size);
    m_at += proto::header_size + size;
    return f;
}

std::optional<runner_exit> parse_runner_exit(std::string_view payload) {
    proto::reader r(reinterpret_cast<const unsigned char*>(payload.data()), payload.size());
    runner_exit x;
    const auto how = r.u8();
    x.value = static_cast<std::int32_t>(r.u32());
    const auto cleaned = r.u8();
    if (!r.ok() || how > static_cast<std::uint8_t>(proto::exit_how::not_started) || cleaned > 1) return std::nullopt;
    x.how = static_cast<proto::exit_how>(how);
    x.cleaned = cleaned == 1;
    std::size_t n = 0;
    const char* rest = r.rest(n);
    x.message.assign(rest, n);
    return x;
}

std::optional<runner_done> parse_runner_done(std::string_view payload) {
    proto::reader r(reinterpret_cast<const unsigned char*>(payload.data()), payload.size());
    runner_done d;
    const auto ok = r.u8();
    d.error = static_cast<std::int32_t>(r.u32());
    d.count = r.u64();
    if (!r.ok() || ok > 1) return std::nullopt;
    d.ok = ok == 1;
    std::size_t n = 0;
    const char* rest = r.rest(n);
    d.message.assign(rest, n);
    return d;
}

runner_verdict judge(const runner_outcome& o, const std::string& where) {
    runner_verdict v;
    v.timed_out = o.timed_out;
    v.interrupted = o.interrupted && !o.timed_out;
    if (!o.exit) v.replace = true;
    if (v.timed_out || v.interrupted) {
        v.exit_code = v.timed_out ? 124 : 130;
        if (o.exit && !o.exit->cleaned) v.replace = true;
        return v;
    }
    if (!o.exit) {
        v.lines.push_back("kernex: the runner in " + where + " failed (" + o.failure +
                          "); the next block gets a fresh one");
        v.exit_code = 1;
        return v;
    }
    switch (o.exit->how) {
    case proto::exit_how::exited: v.exit_code = o.exit->value; break;
    case proto::exit_how::signaled: v.exit_code = 128 + o.exit->value; break;
    case proto::exit_how::not_started:
        v.lines.push_back("kernex: the block could not start in " + where + ": " + o.exit->message + ": " +
                          std::strerror(o.exit->value));
        v.exit_code = 127;
        break;
    default: v.exit_code = 1; break;
    }
    if (!o.exit->cleaned) {
        v.lines.push_back("kernex: " + where + " could not kill everything the block started; the next block gets a fresh one");
        v.replace = true;
        if (v.exit_code == 0) v.exit_code = 1;
    }
    return v;
}

}  // namespace kernex::detail
