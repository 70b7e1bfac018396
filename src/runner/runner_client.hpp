// kernex's side of the resident runner (the program is runner.cpp, the wire
// format runner_protocol.hpp): the runner's bytes, embedded in the library;
// encoding requests; decoding what the runner sends, which is treated as
// hostile (sizes checked before anything is kept, unknown types refused);
// and a runner_session that starts a runner as a child process (inside the
// sandbox) and runs blocks through it. Internal to the library.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernex/process.hpp"
#include "runner/runner_protocol.hpp"

namespace kernex::detail {

// The runner program (a static executable), as built with this library.
std::string_view runner_image();

// The runner as a file (bwrap binds it read-only into the sandbox): written
// once per process into a fresh 0700 temporary directory, removed when the
// process exits (a session's reaper removes it after a kill -9: list the
// file and its directory in remove_if_orphaned). Throws
// kernex::error(io_error) when it cannot be written.
std::filesystem::path runner_host_path();

struct runner_request {
    std::vector<std::string> argv;  // argv[0] absolute, or searched on env's PATH
    std::vector<std::string> env;   // NAME=VALUE
    std::string cwd;
    std::string scrub_dir;          // emptied after the block ("" : none)
    std::chrono::milliseconds timeout{0};  // 0: none
    std::vector<std::pair<int, std::uint64_t>> rlimits;
    bool merge_stderr = true;
    bool inherit_env = false;  // the runner's own environment under env (a container's, as an exec has it)
};

// The 'R' frame for a request. Throws kernex::error(invalid_argument) for a
// string holding a NUL or a request larger than the protocol allows.
std::string encode_run_request(const runner_request& request);
std::string encode_cancel();
// The 'W' frame: content as a new file at name beneath dir (mode as
// create_beneath's). Throws kernex::error(invalid_argument) for a NUL in dir
// or name, or a frame larger than the protocol allows (see max_write_bytes).
std::string encode_write_request(const std::string& dir, const std::string& name, std::string_view content,
                                 unsigned mode);
// The most file bytes a 'W' carries with names of up to PATH_MAX bytes each.
inline constexpr std::size_t max_write_bytes = runner_protocol::max_payload - 3 * 4096;
// The 'P' frame: a tar of dir, its entries named top/..., file bytes past max_file_bytes left out.
std::string encode_pack_request(const std::string& dir, const std::string& top, std::uint64_t max_file_bytes);

struct runner_frame {
    char type = 0;
    std::string payload;
};

// Frames out of a byte stream that arrives in pieces. Never trusts a size:
// a frame larger than runner_protocol::max_payload or of a type the runner
// does not send breaks the stream for good (broken(), with why()).
class runner_frame_decoder {
public:
    // Takes bytes; returns false once the stream is broken.
    bool feed(std::string_view bytes);
    // The next whole frame, if one has arrived.
    std::optional<runner_frame> next();
    bool broken() const noexcept { return !m_why.empty(); }
    const std::string& why() const noexcept { return m_why; }
    // Bytes received but not yet a whole frame.
    std::size_t pending() const noexcept { return m_buffer.size() - m_at; }

private:
    std::string m_buffer;
    std::size_t m_at = 0;
    std::string m_why;
};

struct runner_exit {
    runner_protocol::exit_how how = runner_protocol::exit_how::exited;
    std::int32_t value = 0;
    bool cleaned = false;
    std::string message;
};
// An 'X' payload, or nullopt when it is malformed.
std::optional<runner_exit> parse_runner_exit(std::string_view payload);

// The runner's answer to a 'W' or a 'P'.
struct runner_done {
    bool ok = false;
    std::int32_t error = 0;   // errno of what failed
    std::uint64_t count = 0;  // 'W': bytes written; 'P': file bytes left out
    std::string message;      // what failed (the runner's words: as hostile as the rest)
};
// A 'D' payload, or nullopt when it is malformed.
std::optional<runner_done> parse_runner_done(std::string_view payload);

// What became of a block run through a runner.
struct runner_outcome {
    std::optional<runner_exit> exit;  // the runner's answer; empty when the runner failed
    bool timed_out = false;           // also when the runner did not answer in time
    bool interrupted = false;
    std::string failure;              // why the runner failed (it is gone then)
};

// A block's outcome through a runner as the executors report it: the exit
// code (124 timeout, 130 interrupted, 127 could not start, 128+N killed by
// signal N, 1 when the runner failed), the lines to say, and whether the
// runner (its sandbox or container) must be replaced before the next block.
struct runner_verdict {
    int exit_code = 0;
    bool timed_out = false;
    bool interrupted = false;
    bool replace = false;
    std::vector<std::string> lines;
};
// where: "the sandbox", "the container".
runner_verdict judge(const runner_outcome& outcome, const std::string& where);

// The way to a runner that is not kernex's child: a container's attached
// stream (plain or TLS), whose runner bytes the implementation unwraps.
// Everything that comes through it is as hostile as the runner.
class runner_channel {
public:
    virtual ~runner_channel() = default;
    enum class got { bytes, cancelled, ended, failed, timed_out };
    // Waits until runner bytes arrive (appended to into), cancel_fd (-1:
    // none) becomes readable (not read), the channel ends or breaks, or the deadline.
    virtual got read(std::string& into, clock::time_point deadline, int cancel_fd) = 0;
    // All of data to the runner by the deadline; false when it could not.
    virtual bool write(std::string_view data, clock::time_point deadline) = 0;
    // Without waiting: whether anything (bytes, its end) came that no read handed on.
    virtual bool stirred() = 0;
};

// A runner and the channel to it: a child process's stdin and stdout (the
// runner, possibly behind bwrap), or a runner_channel (a container's
// attached stream). One block at a time.
class runner_session {
public:
    // Starts it and waits for its hello. Throws kernex::error(launch_failed)
    // when it cannot start or does not greet within 10 s.
    explicit runner_session(spawn_options options);
    // Over a channel (owned from now on, closed by stop()); the hello is
    // waited for (the runner must be started meanwhile: kick, called once,
    // does that), as above.
    runner_session(std::unique_ptr<runner_channel> channel, const std::function<void()>& kick,
                   std::chrono::milliseconds hello_within);
    ~runner_session();
    runner_session(const runner_session&) = delete;
    runner_session& operator=(const runner_session&) = delete;

    // Runs one block: on_output gets its stdout (and, unmerged, stderr) as
    // it arrives; cancel_fd readable sends a cancel. When the runner has not
    // answered by request.timeout + grace, dies, or sends anything out of
    // turn, the session is stopped (usable() turns false) and the outcome
    // says why. Never throws for what the runner does.
    runner_outcome run(const runner_request& request, const std::function<void(char, std::string_view)>& on_output,
                       int cancel_fd);

    bool usable() const noexcept { return m_usable; }
    void stop() noexcept;

    // Between blocks (files "copy" in a container): content as a new file at
    // name beneath dir in the runner's file system (see the 'W' frame).
    // Returns the runner's answer, or nullopt when the runner failed (the
    // session is stopped; failure() says why). Never throws for what the
    // runner does; throws as encode_write_request.
    std::optional<runner_done> write_file(const std::string& dir, const std::string& name, std::string_view content,
                                          unsigned mode, std::chrono::milliseconds within);
    // Between blocks: a tar of dir (see the 'P' frame) appended to tar. More
    // than max_tar bytes of it, an answer not in time or anything out of
    // turn stop the session (nullopt, failure() says why): the runner's
    // bytes are as hostile as the code it runs, and they are bounded here.
    std::optional<runner_done> pack(const std::string& dir, const std::string& top, std::uint64_t max_file_bytes,
                                    std::uint64_t max_tar, std::string& tar, std::chrono::milliseconds within);
    // Why the last write_file or pack failed.
    const std::string& failure() const noexcept { return m_failure; }

    // Between blocks the runner says nothing: false (and the session
    // stopped) when its channel has ended or holds bytes nobody asked for.
    bool idle() noexcept;

private:
    void greet(clock::time_point deadline);
    std::optional<runner_frame> next_frame(clock::time_point deadline, int cancel_fd, bool& cancelled);
    std::optional<runner_done> answer(std::string_view request, clock::time_point deadline,
                                      const std::function<bool(std::string_view)>& on_tar);
    child_process m_process;  // the runner, when it is our child
    bool m_spawned = false;
    std::unique_ptr<runner_channel> m_channel;
    runner_frame_decoder m_decoder;
    std::string m_failure;
    bool m_usable = false;
    bool m_ended = false;  // its channel reached end of file
};

}  // namespace kernex::detail
