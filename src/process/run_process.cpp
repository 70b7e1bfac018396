#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "kernex/error.hpp"
#include "kernex/process.hpp"
#include "process/process_internal.hpp"

namespace kernex {

namespace {

using namespace std::chrono_literals;

// How long the pipe is still read once the reaper is gone. Its writers are
// dead by then; what could hold it longer is outside the program's tree and
// must not keep the caller waiting.
constexpr auto drain_grace = 250ms;
// How long the reaper may take to kill the program's tree.
constexpr auto reaper_grace = 10s;
// How much is read in one go before the deadline is looked at again, so a
// child that writes as fast as we read cannot push us past it.
constexpr std::size_t read_burst = 1u << 20;

// Keeps the first max_output bytes, counts the rest (passed on all the same
// when on_output_uncapped).
class output_sink {
public:
    output_sink(run_result& result, const run_options& limits) : m_result(result), m_limits(limits) {}

    void add(const char* data, std::size_t n) {
        const std::size_t room = m_limits.max_output - std::min(m_limits.max_output, m_result.output.size());
        const std::size_t keep = std::min(room, n);
        if (keep > 0) m_result.output.append(data, keep);
        const std::size_t seen = m_limits.on_output_uncapped ? n : keep;
        if (seen > 0 && m_limits.on_output) m_limits.on_output(std::string_view(data, seen));
        if (keep < n) {
            m_result.dropped_bytes += n - keep;
            m_result.truncated = true;
        }
    }

private:
    run_result& m_result;
    const run_options& m_limits;
};

// Reads what the pipe holds (up to read_burst). Returns true at end of file.
bool read_available(int fd, output_sink& sink) {
    std::array<char, 64 * 1024> buffer;
    for (std::size_t total = 0; total < read_burst;) {
        const ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n > 0) {
            sink.add(buffer.data(), static_cast<std::size_t>(n));
            total += static_cast<std::size_t>(n);
        } else if (n == 0) {
            return true;
        } else if (errno != EINTR) {
            return errno != EAGAIN && errno != EWOULDBLOCK;  // a real error ends reading like EOF
        }
    }
    return false;
}

// Reads until end of file or deadline. Returns whether end of file came.
bool drain_until(int fd, output_sink& sink, clock::time_point deadline) {
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        const int n = ::poll(&p, 1, detail::poll_timeout(deadline));
        if (n < 0 && errno != EINTR) return false;
        if (n > 0 && read_available(fd, sink)) return true;
        if (clock::now() >= deadline) return false;
    }
}

}  // namespace

run_result run_process(spawn_options options, const run_options& limits) {
    options.stdout_mode = output_mode::pipe;
    options.stderr_mode = output_mode::pipe;
    options.merge_stderr = true;

    const auto start = clock::now();
    const auto deadline = start + limits.timeout;
    run_result result;
    output_sink sink(result, limits);
    child_process child(options);
    const int out = child.stdout_fd();
    const int ended = child.ended_fd();
    bool eof = false;

    // Until the child exits, the deadline passes or the caller cancels.
    for (;;) {
        pollfd fds[3] = {{eof ? -1 : out, POLLIN, 0}, {ended, POLLIN, 0}, {limits.cancel_fd, POLLIN, 0}};
        int timeout = detail::poll_timeout(deadline);
        if (ended < 0) timeout = std::min(timeout, 5);  // no pidfd: look at the status now and then
        if (::poll(fds, 3, timeout) < 0 && errno != EINTR)
            throw error(errc::io_error, std::string("poll failed: ") + std::strerror(errno));
        if (!eof && fds[0].revents) eof = read_available(out, sink);
        if (ended >= 0 ? fds[1].revents != 0 : !child.running()) break;
        if (fds[2].revents) {
            result.interrupted = true;
            break;
        }
        if (clock::now() >= deadline) {
            result.timed_out = true;
            break;
        }
    }

    // The program is gone or must go: its reaper kills every process it
    // started (whatever session or group they moved to) and then exits, so
    // the pipe's last writers are gone once it has.
    if (result.timed_out || result.interrupted) child.kill();
    child.wait_until(clock::now() + reaper_grace);
    // Only a process that got the pipe's end passed outside the tree (over
    // a unix socket) could hold it open now: read briefly, then give up.
    if (!eof) drain_until(out, sink, clock::now() + drain_grace);
    std::optional<int> status = child.status();
    // A lingering reaper (its program's tree gone) goes to the caller; any
    // other child is stopped, a reaper that did not finish included.
    if (options.linger && limits.lingering && status) {
        child.close_stdout();  // its writers are gone
        *limits.lingering = std::move(child);
    } else {
        child.stop(0ms);
        status = child.status();
    }

    if (result.timed_out)
        result.exit_code = 124;
    else if (result.interrupted)
        result.exit_code = 130;
    else
        result.exit_code = status ? exit_code_of(*status) : 128 + SIGKILL;
    result.elapsed = clock::now() - start;
    return result;
}

spawn_options keeper_spawn_options() {
    spawn_options keeper;
    keeper.argv = {"sleep", "infinity"};
    keeper.inherit_environment = false;
    keeper.env = {{"PATH", "/usr/bin:/bin"}};
    keeper.stdout_mode = output_mode::null;
    keeper.stderr_mode = output_mode::null;
    return keeper;
}

}  // namespace kernex
