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
};

// The 'R' frame for a request. Throws kernex::error(invalid_argument) for a
// string holding a NUL or a request larger than the protocol allows.
std::string encode_run_request(const runner_request& request);
std::string encode_cancel();

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

// What became of a block run through a runner.
struct runner_outcome {
    std::optional<runner_exit> exit;  // the runner's answer; empty when the runner failed
    bool timed_out = false;           // also when the runner did not answer in time
    bool interrupted = false;
    std::string failure;              // why the runner failed (it is gone then)
};

// A runner started as a child process (argv: the runner, possibly behind
// bwrap), whose stdin and stdout are the channel. One block at a time.
class runner_session {
public:
    // Starts it and waits for its hello. Throws kernex::error(launch_failed)
    // when it cannot start or does not greet within 10 s.
    explicit runner_session(spawn_options options);
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

private:
    std::optional<runner_frame> next_frame(clock::time_point deadline, int cancel_fd, bool& cancelled);
    child_process m_process;
    runner_frame_decoder m_decoder;
    bool m_usable = false;
};

}  // namespace kernex::detail
