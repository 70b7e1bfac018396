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

namespace {

// A child's stdin and stdout pipes.
class pipe_channel final : public runner_channel {
public:
    pipe_channel(int to, int from) : m_to(to), m_from(from) {}
    got read(std::string& into, clock::time_point deadline, int cancel_fd) override {
        char buffer[64 * 1024];
        for (;;) {
            pollfd p[2] = {{m_from, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
            const int n = ::poll(p, 2, detail::poll_timeout(deadline));
            if (n < 0 && errno != EINTR) return got::failed;
            if (p[1].revents) return got::cancelled;
            if (p[0].revents) {
                const ssize_t r = ::read(m_from, buffer, sizeof buffer);
                if (r == 0) return got::ended;
                if (r > 0) {
                    into.append(buffer, static_cast<std::size_t>(r));
                    return got::bytes;
                }
                if (errno != EINTR && errno != EAGAIN) return got::failed;
            }
            if (n == 0 && clock::now() >= deadline) return got::timed_out;
        }
    }
    bool write(std::string_view data, clock::time_point deadline) override { return write_by(m_to, data, deadline); }
    bool stirred() override {
        pollfd p{m_from, POLLIN, 0};
        return ::poll(&p, 1, 0) != 0;
    }

private:
    int m_to, m_from;  // the child_process's, closed by it
};

}  // namespace

runner_session::runner_session(spawn_options options) {
    options.stdin_pipe = true;
    options.stdout_mode = output_mode::pipe;
    options.merge_stderr = false;
    options.stderr_mode = output_mode::null;
    m_process = child_process(options);
    m_spawned = true;
    m_channel = std::make_unique<pipe_channel>(m_process.stdin_fd(), m_process.stdout_fd());
    greet(clock::now() + 10s);
}

runner_session::runner_session(std::unique_ptr<runner_channel> channel, const std::function<void()>& kick,
                               std::chrono::milliseconds hello_within)
    : m_channel(std::move(channel)) {
    try {
        if (kick) kick();
    } catch (...) {
        stop();
        throw;
    }
    greet(clock::now() + hello_within);
}

void runner_session::greet(clock::time_point deadline) {
    bool cancelled = false;
    const auto hello = next_frame(deadline, -1, cancelled);
    if (!hello || hello->type != proto::hello || hello->payload != proto::hello_text) {
        const bool ended = m_spawned && !m_process.running();
        const std::string why = m_decoder.broken() ? m_decoder.why()
                                : hello         ? "it did not greet as a runner"
                                : ended ? "it ended (" + describe_status(m_process.status().value_or(0)) + ")"
                                : m_ended ? "it ended before it greeted"
                                        : "it did not greet in time";
        stop();
        throw error(errc::launch_failed, why);
    }
    m_usable = true;
}

runner_session::~runner_session() { stop(); }

void runner_session::stop() noexcept {
    m_usable = false;
    m_channel.reset();  // a container's stream closes: its stdin ends
    m_process.stop(0ms);
}

bool runner_session::idle() noexcept {
    if (!m_usable || !m_channel) return false;
    try {
        if (m_decoder.pending() == 0 && !m_channel->stirred()) return true;
    } catch (...) {
    }
    stop();
    return false;
}

std::optional<runner_frame> runner_session::next_frame(clock::time_point deadline, int cancel_fd, bool& cancelled) {
    std::string bytes;
    for (;;) {
        if (auto f = m_decoder.next()) return f;
        if (m_decoder.broken() || !m_channel) return std::nullopt;
        bytes.clear();
        const auto got = m_channel->read(bytes, deadline, cancelled ? -1 : cancel_fd);
        switch (got) {
        case runner_channel::got::bytes:
            if (!m_decoder.feed(bytes)) return std::nullopt;
            break;
        case runner_channel::got::cancelled:
            cancelled = true;
            if (!m_channel->write(encode_cancel(), deadline)) return std::nullopt;
            break;
        case runner_channel::got::ended:
            m_ended = true;  // the runner is gone
            return std::nullopt;
        case runner_channel::got::failed:
        case runner_channel::got::timed_out:
            return std::nullopt;
        }
    }
}

std::optional<runner_done> runner_session::answer(std::string_view request, clock::time_point deadline,
                                                  const std::function<bool(std::string_view)>& on_tar) {
    auto fail = [&](std::string why) -> std::optional<runner_done> {
        m_failure = std::move(why);
        stop();
        return std::nullopt;
    };
    if (!m_usable) return fail("the runner is not running");
    if (!m_channel->write(request, deadline)) return fail("the runner does not take requests");
    bool cancelled = false;
    for (;;) {
        auto f = next_frame(deadline, -1, cancelled);
        if (!f) {
            if (m_decoder.broken()) return fail(m_decoder.why());
            if (clock::now() >= deadline) return fail("the runner did not answer in time");
            return fail("the runner ended");
        }
        if (f->type == proto::tar && on_tar) {
            if (!on_tar(f->payload)) return fail("the runner sent a tar larger than kernex takes");
            continue;
        }
        if (f->type != proto::done) return fail("the runner sent a frame out of turn");
        auto done = parse_runner_done(f->payload);
        if (!done) return fail("the runner sent a malformed answer");
        return done;
    }
}

std::optional<runner_done> runner_session::write_file(const std::string& dir, const std::string& name,
                                                      std::string_view content, unsigned mode,
                                                      std::chrono::milliseconds within) {
    return answer(encode_write_request(dir, name, content, mode), clock::now() + within, {});
}

std::optional<runner_done> runner_session::pack(const std::string& dir, const std::string& top,
                                                std::uint64_t max_file_bytes, std::uint64_t max_tar, std::string& tar,
                                                std::chrono::milliseconds within) {
    return answer(encode_pack_request(dir, top, max_file_bytes), clock::now() + within, [&](std::string_view bytes) {
        if (bytes.size() > max_tar || tar.size() > max_tar - bytes.size()) return false;
        tar.append(bytes);
        return true;
    });
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
    if (!m_channel->write(encode_run_request(request), deadline))
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
        if (f->type != proto::exit) return fail("the runner sent a frame out of turn in the middle of a block");
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
