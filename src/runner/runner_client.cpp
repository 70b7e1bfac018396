#include "runner/runner_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "kernex/error.hpp"
#include "process/process_internal.hpp"

// The runner's bytes, put into the library by runner_blob.cpp (generated: an .incbin of the built runner).
extern "C" const unsigned char kernex_runner_begin[];
extern "C" const unsigned char kernex_runner_end[];

namespace kernex::detail {

namespace proto = runner_protocol;
using namespace std::chrono_literals;

std::string_view runner_image() {
    return {reinterpret_cast<const char*>(kernex_runner_begin),
            static_cast<std::size_t>(kernex_runner_end - kernex_runner_begin)};
}

namespace {

// The runner written out as a file once per process, removed when the
// process ends normally (by the process that wrote it, not a forked child)
// and, after a kill -9, by the reaper of every session that used it.
struct runner_file {
    std::string dir, file, failure;
    pid_t owner = -1;
    runner_file() {
        std::error_code ec;
        std::string pattern = (std::filesystem::temp_directory_path(ec) / "kernex-runner-XXXXXX").string();
        if (ec) pattern = "/tmp/kernex-runner-XXXXXX";
        if (!::mkdtemp(pattern.data())) {
            failure = "cannot make a directory in " + pattern + ": " + std::strerror(errno);
            return;
        }
        dir = pattern;
        owner = ::getpid();
        const std::string path = dir + "/kernex-runner";
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0700);
        if (fd < 0) {
            failure = "cannot create " + path + ": " + std::strerror(errno);
            return;
        }
        const auto image = runner_image();
        std::size_t done = 0;
        while (done < image.size()) {
            const ssize_t n = ::write(fd, image.data() + done, image.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                failure = "cannot write " + path + ": " + std::strerror(errno);
                break;
            }
            done += static_cast<std::size_t>(n);
        }
        ::fchmod(fd, 0500);
        ::close(fd);
        if (failure.empty()) file = path;
    }
    ~runner_file() {
        if (owner != ::getpid()) return;
        if (!dir.empty()) {
            ::unlink((dir + "/kernex-runner").c_str());
            ::rmdir(dir.c_str());
        }
    }
};

const runner_file& the_runner_file() {
    static const runner_file f;
    return f;
}

}  // namespace

std::filesystem::path runner_host_path() {
    const auto& f = the_runner_file();
    if (f.file.empty()) throw error(errc::io_error, "cannot prepare the resident runner: " + f.failure);
    return f.file;
}

namespace {

// How long the runner may take beyond the block's own timeout (its cleanup) before it counts as failed.
constexpr auto answer_grace = 10s;

// Writes all of data to a non-blocking fd by the deadline.
bool write_by(int fd, std::string_view data, clock::time_point deadline) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN) return false;
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, detail::poll_timeout(deadline)) == 0 && clock::now() >= deadline) return false;
    }
    return true;
}

}  // namespace

runner_session::runner_session(spawn_options options) {
    options.stdin_pipe = true;
    options.stdout_mode = output_mode::pipe;
    options.merge_stderr = false;
    options.stderr_mode = output_mode::null;
    m_process = child_process(options);
    bool cancelled = false;
    const auto hello = next_frame(clock::now() + 10s, -1, cancelled);
    if (!hello || hello->type != proto::hello || hello->payload != proto::hello_text) {
        const std::string why = m_decoder.broken() ? m_decoder.why()
                                : hello         ? "it did not greet as a runner"
                                : m_process.running() ? "it did not greet within 10 s"
                                                : "it ended (" + describe_status(m_process.status().value_or(0)) + ")";
        m_process.stop(0ms);
        throw error(errc::launch_failed, why);
    }
    m_usable = true;
}

runner_session::~runner_session() { stop(); }

void runner_session::stop() noexcept {
    m_usable = false;
    m_process.stop(0ms);
}

std::optional<runner_frame> runner_session::next_frame(clock::time_point deadline, int cancel_fd, bool& cancelled) {
    char buffer[64 * 1024];
    for (;;) {
        if (auto f = m_decoder.next()) return f;
        if (m_decoder.broken()) return std::nullopt;
        pollfd p[2] = {{m_process.stdout_fd(), POLLIN, 0}, {cancelled ? -1 : cancel_fd, POLLIN, 0}};
        const int n = ::poll(p, 2, detail::poll_timeout(deadline));
        if (n < 0 && errno != EINTR) return std::nullopt;
        if (p[1].revents) {
            cancelled = true;
            if (!write_by(m_process.stdin_fd(), encode_cancel(), deadline)) return std::nullopt;
        }
        if (p[0].revents) {
            const ssize_t got = ::read(m_process.stdout_fd(), buffer, sizeof buffer);
            if (got == 0) return std::nullopt;  // the runner is gone
            if (got < 0 && errno != EINTR && errno != EAGAIN) return std::nullopt;
            if (got > 0) m_decoder.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
        }
        if (n == 0 && clock::now() >= deadline) return std::nullopt;
    }
}

runner_outcome runner_session::run(const runner_request& request,
                                   const std::function<void(char, std::string_view)>& on_output, int cancel_fd) {
    runner_outcome outcome;
    const auto deadline = clock::now() + (request.timeout.count() > 0 ? request.timeout : std::chrono::hours(24 * 365)) +
                          answer_grace;
    auto fail = [&](std::string why) {
        outcome.failure = std::move(why);
        stop();
        return outcome;
    };
    if (!m_usable) return fail("the runner is not running");
    if (!write_by(m_process.stdin_fd(), encode_run_request(request), deadline))
        return fail("the runner does not take requests");
    bool cancelled = false;
    for (;;) {
        auto f = next_frame(deadline, cancel_fd, cancelled);
        if (!f) {
            if (m_decoder.broken()) return fail(m_decoder.why());
            if (clock::now() >= deadline) {
                outcome.timed_out = !cancelled;
                outcome.interrupted = cancelled;
                return fail("the runner did not answer in time");
            }
            return fail("the runner ended");
        }
        if (f->type == proto::out || f->type == proto::err) {
            if (on_output) on_output(f->type, f->payload);
            continue;
        }
        if (f->type != proto::exit) return fail("the runner sent a hello in the middle of a block");
        outcome.exit = parse_runner_exit(f->payload);
        if (!outcome.exit) return fail("the runner sent a malformed exit frame");
        outcome.timed_out = outcome.exit->how == proto::exit_how::timed_out;
        outcome.interrupted = outcome.exit->how == proto::exit_how::cancelled;
        // A runner that could not kill what the block started is not used again.
        if (!outcome.exit->cleaned) stop();
        return outcome;
    }
}

}  // namespace kernex::detail
