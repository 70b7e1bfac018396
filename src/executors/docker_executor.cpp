#include "kernex/docker_executor.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "confine/files.hpp"
#include "docker/archive.hpp"
#include "docker/containers.hpp"
#include "docker/exec_stream.hpp"
#include "docker/nosuid_bind.hpp"
#include "docker/reaper.hpp"
#include "executors/code_files.hpp"
#include "executors/executor_config.hpp"
#include "kernex/error.hpp"
#include "process/remove_tree.hpp"
#include "runner/runner_client.hpp"

namespace kernex {

namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

// As local_executor's, run by the programs on the container's PATH.
const std::vector<detail::file_language>& language_table() {
    static const std::vector<detail::file_language> table = {
        {{"bash"}, "bash", "sh", {}},
        {{"sh", "shell"}, "sh", "sh", {}},
        {{"python", "py", "python3"}, "python3", "py", {}},
    };
    return table;
}

// The container's first process: a shell that sleeps until told to stop. It
// ends on SIGTERM (a PID 1 without a handler ignores it, and `docker stop`
// would wait its grace period for nothing), and, being PID 1, it reaps the
// orphans that blocks leave. It runs as a uid of its own (m_keeper_uid), so
// that the blocks can neither signal nor trace it, and it alone may stay.
constexpr const char* keep_alive_script = "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";

// Runs a block: "$@" is the interpreter and the file. Its stderr goes into
// its stdout: the daemon copies an exec's two streams independently, so a
// traceback could otherwise arrive before the lines printed ahead of it. The
// exit code is reported on the exec's stderr, which then carries nothing
// else, so that no exec inspect is needed. Then every process the blocks'
// user can signal is killed but the wrapper itself and PID 1 (kill -1: one
// pass of the kernel's that no fork escapes, whatever session, group or
// environment they moved to), so that the exec's stream closes. Whether that
// worked is then checked from outside (end_block_processes). Process
// creation inside a container is the wrapper's whole cost, so it has one
// fork and one exec more than running the file bare, and nothing else that
// is not a builtin.
constexpr const char* block_script =
    "exec 3>&2 2>&1\n"
    "\"$@\" 3>&- &\n"
    "wait $!\n"
    "r=$?\n"
    "echo \"$r\" >&3\n"
    "kill -KILL -1 2>/dev/null\n"
    "exit \"$r\"\n";

// With the resident runner: the container's first process waits for a line
// on its stdin (the attached stream), which comes once the runner has been
// copied in, then becomes the runner (pid 1, as the blocks' user). The
// runner's volume: a tmpfs of its own (the archive endpoint writes to a
// volume of a running container, not to a read-only root).
constexpr const char* runner_boot_script = "read -r _ && exec /.kernex/kernex-runner";
constexpr const char* runner_dir = "/.kernex";

// Kills every process the blocks' user can signal (all but PID 1 and this
// shell), then says "ok". Run after a block that left something running.
// (Its success says nothing: kill -1 also counts the first process's, which
// it may not signal. The check from outside does.)
constexpr const char* kill_script = "kill -KILL -1 2>/dev/null; echo ok\n";

// The uid the container's first process runs as: one the blocks' user is not.
std::string keeper_uid_for(const std::string& user) {
    const std::string name = user.substr(0, user.find(':'));
    return name == "65534" || name == "nobody" ? "65533" : "65534";
}

// The exit code in what the block's wrapper wrote on stderr: "N\n" alone.
std::optional<int> reported_exit_code(const std::string& report) {
    if (report.size() < 2 || report.size() > 4 || report.back() != '\n') return std::nullopt;
    int code = 0;
    for (std::size_t i = 0; i + 1 < report.size(); ++i) {
        if (report[i] < '0' || report[i] > '9') return std::nullopt;
        code = code * 10 + (report[i] - '0');
    }
    return code;
}

// What one block needs to run, worked out before anything runs.
struct planned_block {
    std::string name;     // as written (directive) or content-hashed, relative to the work dir
    std::string program;  // the interpreter in the container
};

// The work dir's nosuid,nodev mount for one start of the container, held
// until the start returns; none when the dir is bound as it is.
std::optional<docker::nosuid_bind::mounted> mount_for_start(const docker::nosuid_bind* bind) {
    if (!bind) return std::nullopt;
    return bind->for_start();
}

}  // namespace

docker_executor::docker_executor(docker_executor_options options)
    : m_options(std::move(options)),
      m_client(docker_client_options{
          .host = m_options.docker_host, .tls = m_options.tls, .timeout = m_options.request_timeout}) {
    if (m_options.image.empty()) throw error(errc::invalid_argument, "the docker executor needs an image");
    if (m_options.timeout.count() <= 0 || m_options.request_timeout.count() <= 0)
        throw error(errc::invalid_argument, "the docker executor's timeouts must be positive");
    docker::check_limits({m_options.memory, m_options.cpus, m_options.pids_limit});
    if (m_options.network_mode.empty()) m_options.network_mode = "none";
    if (!m_options.user) m_options.user = std::to_string(::getuid()) + ":" + std::to_string(::getgid());
    m_keeper_uid = keeper_uid_for(*m_options.user);
    if (m_options.work_dir) m_options.work_dir = fs::absolute(*m_options.work_dir);
    if (m_options.files.empty()) m_options.files = m_client.host().starts_with("unix://") ? "bind" : "copy";
    if (m_options.files != "bind" && m_options.files != "copy")
        throw error(errc::invalid_argument, "files must be \"bind\" or \"copy\", not \"" + m_options.files + "\"");

    if (!m_options.resident_runner)
        m_runner_note = "resident_runner is false";
    else if (!m_options.stop_container)
        m_runner_note = "the resident runner ends with kernex, and stop_container is false";
    else if (std::any_of(m_options.cap_add.begin(), m_options.cap_add.end(), [](std::string c) {
                 // As Docker reads them: any case, with or without CAP_.
                 for (auto& ch : c) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
                 if (c.starts_with("CAP_")) c.erase(0, 4);
                 return c == "ALL" || c == "SYS_PTRACE";
             }))
        m_runner_note = "with SYS_PTRACE the blocks could take over the resident runner";

    detail::open_cancel_pipe(m_cancel_read, m_cancel_write);
    try {
        // The containers (and temporary dirs) of kernex processes that were
        // killed: their reapers may have died with them.
        docker::sweep_orphans(m_client);
        if (m_options.stop_container) m_reaper = std::make_unique<docker::reaper>(m_client);
        make_work_dir();
        start_container();
    } catch (...) {
        stop();
        ::close(m_cancel_read);
        ::close(m_cancel_write);
        throw;
    }
}

docker_executor::~docker_executor() {
    stop();
    ::close(m_cancel_read);
    ::close(m_cancel_write);
}

void docker_executor::make_work_dir() {
    auto made = detail::make_work_dir(m_options.work_dir);
    m_work_dir = std::move(made.path);
    m_owns_work_dir = made.temporary;
    if (m_owns_work_dir && m_reaper) m_reaper->track_dir(m_work_dir.string());
}

void docker_executor::start_container() {
    std::error_code ec;
    const fs::path dir = fs::canonical(m_work_dir, ec);
    if (ec) throw error(errc::io_error, "the work dir " + m_work_dir.string() + " is gone: " + ec.message());
    docker::container_config config;
    config.image = m_options.image;
    config.name = m_options.container_name.value_or("kernex-" + docker::random_hex(12));
    // nosuid,nodev where kernex can (nosuid_bind.hpp): mounted for each
    // start of the container (this one, ensure_running's, restart's). Not
    // for a container kept after kernex (stop_container false, auto_remove
    // false): a later docker start of it would find no mount there.
    m_work_bind.reset();
    if (m_options.files == "bind" && m_options.stop_container && m_options.auto_remove)
        m_work_bind = std::make_unique<docker::nosuid_bind>(m_client, dir, m_reaper.get());
    config.cmd = {"sh", "-c", keep_alive_script};
    // Not /workspace: the first process's uid may not enter it.
    config.working_dir = "/";
    const auto work_mounted = mount_for_start(m_work_bind.get());
    if (m_options.files == "bind") {
        config.binds = {(m_work_bind ? m_work_bind->source() : dir.string()) + ":/workspace:rw"};
    } else {
        // A tmpfs of its own (the archive endpoint cannot write to a read-only
        // root, nor to the container's own tmpfs mounts), owned by the blocks' user.
        const copy_owner owner = owner_in_container();
        config.tmpfs_volumes = {{"/workspace", owner.known ? "nosuid,nodev,uid=" + std::to_string(owner.uid) +
                                                                  ",gid=" + std::to_string(owner.gid) + ",mode=0700"
                                                            : std::string("nosuid,nodev,mode=1777")}};
    }
    config.network_mode = m_options.network_mode;
    config.limits = {m_options.memory, m_options.cpus, m_options.pids_limit};
    config.confinement = {m_options.read_only, m_options.no_new_privileges, m_options.cap_add};
    config.labels = {{"org.kernex.executor", "docker"}};
    if (m_reaper)
        config.labels.merge(docker::owner_labels(
            m_owns_work_dir ? std::vector{m_work_dir.string()} : std::vector<std::string>{},
            m_work_bind ? m_work_bind->mount_points() : std::vector<std::string>{}));
    config.user = m_keeper_uid + ":" + m_keeper_uid;
    const bool with_runner = m_runner_note.empty();
    if (with_runner) {
        // The runner is pid 1 as the blocks' user: as the namespace's init
        // no block can signal it (SIGKILL included), and it is not dumpable.
        config.cmd = {"sh", "-c", runner_boot_script};
        config.user = *m_options.user;
        config.open_stdin = true;
        config.no_logs = true;  // the blocks' output is not written to the daemon's disk
        config.tmpfs_volumes.push_back({runner_dir, "nosuid,nodev,mode=0755"});
    }
    auto create = [&] {
        m_container_id = docker::create_container(m_client, config);
        m_container_name = config.name;
        if (m_reaper) m_reaper->track_container(m_container_id);
    };
    if (with_runner) {
        try {
            create();
            start_runner();
        } catch (const error& e) {
            // Not in this image (or daemon): every block an exec, as before.
            // (A failure that is not the runner's, a missing image, comes again from there.)
            m_runner.reset();
            m_runner_note = std::string("the resident runner could not run in the image: ") + e.what();
            remove_container();
            start_container();
            return;
        }
        if (m_options.files == "copy") copy_work_dir_in();
        return;
    }
    create();
    try {
        docker::start_container(m_client, m_container_id, m_options.image,
                                "the image needs sh and sleep; a bad memory, cpus or pids_limit?");
    } catch (const error&) {
        remove_container();
        throw;
    }
    if (m_options.files == "copy") copy_work_dir_in();
}

namespace {

// The runner's channel in a container: the attached stream (plain or TLS),
// whose multiplexed frames carry the runner's stdout (its frames) and sh's
// stderr (kept for an error, should the runner not start).
class attached_channel final : public detail::runner_channel {
public:
    attached_channel(std::unique_ptr<docker_attached_stream> stream, std::shared_ptr<std::string> said)
        : m_stream(std::move(stream)), m_said(std::move(said)) {}
    got read(std::string& into, steady::time_point deadline, int cancel_fd) override {
        for (;;) {
            std::string raw;
            switch (m_stream->read(raw, deadline, cancel_fd)) {
            case docker_attached_stream::wait::data: break;
            case docker_attached_stream::wait::cancelled: return got::cancelled;
            case docker_attached_stream::wait::ended: return got::ended;
            case docker_attached_stream::wait::failed: return got::failed;
            case docker_attached_stream::wait::timed_out: return got::timed_out;
            }
            const std::size_t before = into.size();
            try {
                m_demuxer.feed(raw, [&](docker_stream s, std::string_view d) {
                    if (s == docker_stream::standard_output) into.append(d);
                    else if (m_said->size() < 512) m_said->append(d.substr(0, 512 - m_said->size()));
                });
            } catch (const error&) {
                return got::failed;  // not the daemon's framing
            }
            if (into.size() > before) return got::bytes;
        }
    }
    bool write(std::string_view data, steady::time_point deadline) override { return m_stream->write(data, deadline); }
    bool stirred() override { return m_stream->stirred(); }

private:
    std::unique_ptr<docker_attached_stream> m_stream;
    std::shared_ptr<std::string> m_said;
    docker::exec_stream_demuxer m_demuxer;
};

}  // namespace

void docker_executor::start_runner() {
    // Attached before the start, so nothing it says is missed.
    auto stream = m_client.attach(m_container_id);
    docker_attached_stream* to_container = stream.get();  // owned by the session's channel from here on
    auto said = std::make_shared<std::string>();  // its stderr (sh's, should the exec fail), for the error
    auto kick = [this, to_container] {
        docker::start_container(m_client, m_container_id, m_options.image,
                                "the image needs sh; a bad memory, cpus or pids_limit?");
        m_client.put_archive(m_container_id, runner_dir,
                             docker::make_tar({{"kernex-runner", false, 0555, 0, 0, std::string(detail::runner_image())}}));
        if (!to_container->write("\n", steady::now() + std::chrono::seconds(10)))
            throw error(errc::docker_error, "the container's stdin does not take the go-ahead");
    };
    try {
        m_runner = std::make_unique<detail::runner_session>(std::make_unique<attached_channel>(std::move(stream), said),
                                                            kick, std::chrono::seconds(10));
    } catch (const error& e) {
        if (said->empty()) throw;
        throw error(e.code(), std::string(e.what()) + ": " + said->substr(0, said->find('\n')));
    }
}

docker_executor::copy_owner docker_executor::owner_in_container() const {
    const std::string& user = *m_options.user;
    const auto colon = user.find(':');
    auto numeric = [](std::string_view v) {
        return !v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string_view::npos;
    };
    if (colon == std::string::npos || !numeric(std::string_view(user).substr(0, colon)) ||
        !numeric(std::string_view(user).substr(colon + 1)))
        return {};
    return {static_cast<unsigned>(std::stoul(user.substr(0, colon))),
            static_cast<unsigned>(std::stoul(user.substr(colon + 1))), true};
}

namespace {

// The entries for name's parent dirs, then the file itself, as owner has them.
void add_with_parents(std::vector<docker::tar_entry>& entries, const std::string& name, std::string content,
                      unsigned uid, unsigned gid, bool known) {
    for (auto slash = name.find('/'); slash != std::string::npos; slash = name.find('/', slash + 1))
        entries.push_back({name.substr(0, slash), true, static_cast<mode_t>(known ? 0700 : 0777), uid, gid, {}});
    entries.push_back({name, false, static_cast<mode_t>(known ? 0600 : 0644), uid, gid, std::move(content)});
}

}  // namespace

bool docker_executor::copy_file_in(const std::string& name, const std::string& content,
                                   const std::function<void(const std::string&)>& say) {
    if (m_runner && m_runner->usable() && content.size() <= detail::max_write_bytes) {
        // On the runner's stream, made by the runner beneath /workspace: no
        // archive request. (Larger files, rare for code, take the archive.)
        const auto done = m_runner->write_file("/workspace", name, content, 0600, m_options.request_timeout);
        if (done && done->ok) return true;
        say(done ? "kernex: the block's file " + name + " could not be made in the container: " + done->message
                 : "kernex: the runner in the container failed (" + m_runner->failure() +
                       "); the next block gets a fresh one");
        return false;
    }
    const copy_owner owner = owner_in_container();
    std::vector<docker::tar_entry> entries;
    add_with_parents(entries, name, content, owner.uid, owner.gid, owner.known);
    m_client.put_archive(m_container_id, "/workspace", docker::make_tar(entries));
    return true;
}

void docker_executor::copy_work_dir_in() {
    const copy_owner owner = owner_in_container();
    std::vector<docker::tar_entry> entries;
    std::uint64_t total = 0, left = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(m_work_dir, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
        const fs::file_status st = it->symlink_status(ec);
        if (ec || st.type() != fs::file_type::regular) {
            ec.clear();
            continue;
        }
        const std::string name = it->path().lexically_relative(m_work_dir).generic_string();
        std::ifstream in(it->path(), std::ios::binary);
        std::ostringstream bytes;
        bytes << in.rdbuf();
        std::string content = std::move(bytes).str();
        if (total + content.size() > m_options.max_copy_back) {
            left += content.size();
            continue;
        }
        total += content.size();
        add_with_parents(entries, name, std::move(content), owner.uid, owner.gid, owner.known);
    }
    if (left > 0)
        m_copy_note = "kernex: " + std::to_string(left) + " bytes of the work dir's files were not copied into the container (max_copy_back is " +
                      std::to_string(m_options.max_copy_back) + ")";
    if (!entries.empty()) m_client.put_archive(m_container_id, "/workspace", docker::make_tar(entries));
}

void docker_executor::copy_back(const std::function<void(const std::string&)>& say) {
    // The tar carries headers and padding besides the files' bytes.
    const std::uint64_t max_tar = m_options.max_copy_back * 2 + (16u << 20);
    try {
        std::string tar;
        std::uint64_t left_out = 0;
        bool packed = false;
        if (m_runner && m_runner->usable()) {
            // On the runner's stream: the runner packs /workspace (nothing of
            // the blocks' runs any more), bounded here like the archive's.
            const auto done = m_runner->pack("/workspace", "workspace", m_options.max_copy_back, max_tar, tar,
                                             m_options.request_timeout);
            if (done && done->ok) {
                packed = true;
                left_out = done->count;
            } else if (done) {
                say("kernex: the files the blocks wrote could not be packed in the container: " + done->message);
                return;
            } else {
                // The runner failed (or sent what kernex does not take): the archive endpoint, once more.
                tar.clear();
            }
        }
        if (!packed) tar = m_client.get_archive(m_container_id, "/workspace", max_tar);
        const unique_fd dir = confine::open_dir(m_work_dir);
        const auto report = docker::unpack_beneath(dir.get(), tar, m_options.max_copy_back);
        for (const auto& refused : report.refused) say("kernex: not copied back from the container: " + refused);
        if (report.dropped_bytes + left_out > 0)
            say("kernex: " + std::to_string(report.dropped_bytes + left_out) +
                " bytes of files the blocks wrote were not copied back (max_copy_back is " +
                std::to_string(m_options.max_copy_back) + ")");
    } catch (const error& e) {
        say(std::string("kernex: the files the blocks wrote could not be copied back: ") + e.what());
    }
}

// A container that has stopped (or gone) since the last block: start it again, or make a new one.
void docker_executor::ensure_running() {
    const auto work_mounted = mount_for_start(m_work_bind.get());
    const docker_response r = m_client.request("POST", "/containers/" + m_container_id + "/start");
    if (r.status == 204 && m_options.files == "copy") copy_work_dir_in();  // its tmpfs began empty
    if (r.status == 204 || r.status == 304) return;
    remove_container();
    start_container();
}

void docker_executor::restart() {
    if (m_runner) {
        // A fresh runner comes with a fresh container.
        m_runner.reset();
        remove_container();
        start_container();
        return;
    }
    if (m_container_id.empty()) {
        if (m_work_dir.empty()) make_work_dir();
        start_container();
        return;
    }
    const auto work_mounted = mount_for_start(m_work_bind.get());
    const docker_response r = m_client.request("POST", "/containers/" + m_container_id + "/restart?t=2");
    if (r.status == 404) {
        remove_container();
        start_container();
    } else if (r.status == 204) {
        if (m_options.files == "copy") copy_work_dir_in();  // its tmpfs began empty
    } else {
        throw error(errc::docker_error, "the Docker daemon at " + m_client.host() + " could not restart container " +
                                            m_container_name + " (" + std::to_string(r.status) + "): " + r.body);
    }
}

void docker_executor::remove_container() noexcept {
    m_runner.reset();  // its stdin closes: the runner kills every block process and exits
    docker::remove_container(m_client, m_container_id);
    if (m_reaper) m_reaper->forget_container(m_container_id);
    m_container_id.clear();
    m_container_name.clear();
    m_work_bind.reset();  // its mount point, with the container that named it
}

void docker_executor::stop() noexcept {
    m_runner.reset();
    bool left_running = false;
    if (!m_container_id.empty()) {
        if (!m_options.stop_container) {
            left_running = true;
        } else if (m_options.auto_remove) {
            remove_container();
        } else {
            try {
                m_client.request("POST", "/containers/" + m_container_id + "/stop?t=2");
            } catch (...) {
            }
            if (m_reaper) m_reaper->forget_container(m_container_id);  // kept, stopped, as asked
        }
        m_container_id.clear();
        m_container_name.clear();
    }
    m_work_bind.reset();
    // A container left running still has the work dir bound: it stays too.
    if (m_owns_work_dir && !left_running) {
        detail::remove_tree(m_work_dir.c_str());  // dirs the blocks made read-only too
        std::error_code ec;
        if (m_reaper && !fs::exists(m_work_dir, ec)) m_reaper->forget_dir(m_work_dir.string());
    }
    if (m_owns_work_dir) m_work_dir.clear();
    m_owns_work_dir = false;
}

void docker_executor::interrupt() noexcept { detail::send_cancel(m_cancel_write); }

std::vector<std::vector<std::string>> docker_executor::languages() { return detail::language_names(language_table()); }

std::size_t docker_executor::foreign_processes() {
    // The daemon lists the container's processes from its cgroup, with the
    // host's ps: nothing the code in the container does can hide one.
    const docker_response r = m_client.request("GET", "/containers/" + m_container_id + "/top?ps_args=-o%20pid,uid,stat");
    if (r.status == 409 || r.status == 404) return 0;  // not running: nothing runs in it
    if (r.status != 200)
        throw error(errc::docker_error, "the Docker daemon at " + m_client.host() + " could not list the processes of container " +
                                            m_container_name + ": " + docker::daemon_message(r));
    const auto top = nlohmann::json::parse(r.body, nullptr, false);
    if (!top.is_object() || !top.contains("Titles") || !top.contains("Processes"))
        throw error(errc::docker_error, "the Docker daemon at " + m_client.host() + " sent a bad process list");
    std::size_t uid_at = std::string::npos, stat_at = std::string::npos;
    for (std::size_t i = 0; i < top["Titles"].size(); ++i) {
        const std::string title = top["Titles"][i].is_string() ? top["Titles"][i].get<std::string>() : "";
        if (title == "UID") uid_at = i;
        if (title == "STAT") stat_at = i;
    }
    if (uid_at == std::string::npos || stat_at == std::string::npos)
        throw error(errc::docker_error, "the Docker daemon at " + m_client.host() + " listed processes without UID and STAT");
    std::size_t foreign = 0;
    for (const auto& p : top["Processes"]) {
        if (!p.is_array() || p.size() <= std::max(uid_at, stat_at)) continue;
        const std::string uid = p[uid_at].is_string() ? p[uid_at].get<std::string>() : "";
        const std::string stat = p[stat_at].is_string() ? p[stat_at].get<std::string>() : "";
        if (stat.starts_with("Z")) continue;  // dead, not yet reaped by PID 1
        if (uid != m_keeper_uid) ++foreign;
    }
    return foreign;
}

std::string docker_executor::end_block_processes(const std::function<void(const std::string&)>& say) {
    if (foreign_processes() == 0) return {};
    // Left running (a timeout, an interrupt, a wrapper killed or stopped by
    // the code): kill -1 again from a fresh exec, as the blocks' user, and
    // check from outside until they are gone (zombies reaped by PID 1).
    for (int attempt = 0; attempt < 3; ++attempt) {
        bool ran = false;
        try {
            const std::string id = m_client.create_exec(
                m_container_id, {.cmd = {"sh", "-c", kill_script}, .env = {}, .working_dir = "/", .user = *m_options.user});
            std::string said;
            const auto end = m_client.start_exec(
                id, {.deadline = steady::now() + std::min<std::chrono::milliseconds>(m_options.request_timeout,
                                                                                     std::chrono::seconds(10)),
                     .on_output =
                         [&](docker_stream s, std::string_view d) {
                             if (s == docker_stream::standard_output && said.size() < 64) said.append(d.substr(0, 64));
                         },
                     .cancel_fd = -1});
            ran = end == docker_stream_end::finished && said == "ok\n";
        } catch (const error&) {
            // The exec could not even start: the process table is full (a
            // fork bomb at the pids limit), or the code stopped it.
        }
        if (!ran) break;
        for (int i = 0; i < 20; ++i) {
            if (foreign_processes() == 0) return {};
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    // What runs in the container could not be ended from inside: the
    // container goes (every process with it) and a new one takes its place.
    // With files "copy" what the blocks wrote is fetched first: its
    // /workspace goes with it.
    if (m_options.files == "copy") copy_back(say);
    const std::string old_name = m_container_name;
    remove_container();
    start_container();
    return "kernex: processes of the block could not be ended inside container " + old_name +
           " (its process table full?): it was replaced by " + m_container_name + " (its /tmp is lost)";
}

bool docker_executor::block_outcome(docker_stream_end end, const std::string& exec_id, std::string& report,
                                    steady::time_point deadline, std::chrono::milliseconds limit,
                                    code_result& result,
                                    const std::function<void(docker_stream, std::string_view)>& keep,
                                    const std::function<void(const std::string&)>& say) {
    if (end == docker_stream_end::timed_out) {
        say(detail::timeout_line(limit));
        result.exit_code = 124;
        result.timed_out = true;
        return false;
    }
    if (end == docker_stream_end::interrupted) {
        say("Interrupted");
        result.exit_code = 130;
        return false;
    }
    std::optional<int> code = reported_exit_code(report);
    const bool reported = code.has_value();
    if (!reported) {
        // No report: the wrapper did not get to it (killed with its
        // container?) or said something else, which is output too.
        if (!report.empty()) keep(docker_stream::standard_output, report);
        // The stream closes as the exec ends; the daemon may record
        // its exit code a moment later.
        const auto until = std::max(deadline, steady::now() + std::chrono::seconds(5));
        while (!(code = m_client.exec_exit_code(exec_id)) && steady::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (!code) {
        say(detail::timeout_line(limit));
        result.exit_code = 124;
        result.timed_out = true;
        return false;
    }
    if (*code == 0) return true;
    // Killed: by the code itself, the memory limit, or with its container?
    if (!reported && (*code < 0 || *code >= 126) && stopped_under_block(say)) {
        result.exit_code = 1;
        return false;
    }
    result.exit_code = *code < 0 ? 1 : *code;
    return false;
}

bool docker_executor::stopped_under_block(const std::function<void(const std::string&)>& say) {
    // The daemon may learn of the container's end just after the block's, so it is given a moment to.
    nlohmann::json state;
    for (int i = 0; i < 10; ++i) {
        if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        const docker_response r = m_client.request("GET", "/containers/" + m_container_id + "/json");
        if (r.status == 404) {
            say("kernex: the container " + m_container_name + " was removed while the block ran; the next execute() starts a new one");
            return true;
        }
        const auto info = nlohmann::json::parse(r.body, nullptr, false);
        if (r.status != 200 || !info.is_object() || !info.contains("State") || !info["State"].is_object())
            return false;  // nothing known: not said
        state = info["State"];
        if (!state.value("Running", false)) break;
    }
    if (state.value("Running", false)) return false;
    say("kernex: the container " + m_container_name + " stopped while the block ran (" +
        (state.value("OOMKilled", false) ? std::string("out of memory")
                                         : "exit code " + std::to_string(state.value("ExitCode", -1))) +
        "); the next execute() starts it again");
    return true;
}

void docker_executor::after_block(const fs::path& dir, const std::function<void(const std::string&)>& say) {
    if (m_options.files == "copy") copy_back(say);
    else if (const std::size_t n = docker::clear_setuid_bits(dir); n > 0)
        say("kernex: cleared the setuid/setgid bits of " + std::to_string(n) +
            " files the block made in the work dir (another user of the host could run them as their owner)");
}

bool docker_executor::run_in_runner(const std::string& program, const std::string& relative,
                                    const std::vector<std::string>& env, const detail::block_limit& block,
                                    code_result& result, detail::block_output& out,
                                    const std::function<void(const std::string&)>& say) {
    detail::runner_request request;
    request.argv = {program, relative};
    // The container's environment (the runner's, as Docker gave it to its
    // first process) under the block's, as an exec would have it.
    request.env = env;
    request.inherit_env = true;
    request.cwd = "/workspace";
    request.timeout = std::max(std::chrono::milliseconds(1),
                               std::chrono::ceil<std::chrono::milliseconds>(block.deadline - steady::now()));
    const auto outcome =
        m_runner->run(request, [&out](char, std::string_view text) { out.emit(text); }, m_cancel_read);
    if (!outcome.exit && !outcome.timed_out && !outcome.interrupted && stopped_under_block(say)) {
        // Killed with its container (from outside, or out of memory): a fresh one comes next.
        m_runner->stop();
        result.exit_code = 1;
        return false;
    }
    const auto verdict = detail::judge(outcome, "the container");
    for (const auto& line : verdict.lines) say(line);
    if (verdict.timed_out) say(detail::timeout_line(block.limit));
    if (verdict.interrupted) say("Interrupted");
    // A runner to replace has been stopped by run(): the next block finds it not idle.
    result.timed_out = verdict.timed_out;
    result.exit_code = verdict.exit_code;
    return verdict.exit_code == 0;
}

code_result docker_executor::execute_blocks(const std::vector<code_block>& blocks, const output_handler& on_output) {
    code_result result;
    detail::block_output out(result, on_output, {m_options.max_output, m_options.max_output_head});
    auto say = [&](const std::string& line) { out.say(line); };
    detail::drain_cancel(m_cancel_read);
    if (m_container_id.empty()) {
        if (m_work_dir.empty()) make_work_dir();
        start_container();
    }
    result.notes.push_back(
        (m_options.files == "bind"
             ? "files: bind (the work dir " + m_work_dir.string() + " is bound at /workspace)"
             : "files: copy (the work dir " + m_work_dir.string() +
                   " and /workspace in the container are kept alike through the Engine API)") +
        (m_runner ? std::string("; blocks: the resident runner (the container's pid 1)")
                  : "; blocks: an Engine API exec each" + (m_runner_note.empty() ? "" : " (" + m_runner_note + ")")));
    if (m_reaper && !m_reaper->missing().empty()) result.notes.push_back(m_reaper->missing());
    std::error_code ec;
    const fs::path dir = fs::canonical(m_work_dir, ec);
    if (ec) throw error(errc::io_error, "the work dir " + m_work_dir.string() + " is gone: " + ec.message());
    if (m_options.save_full_output) out.save_full_output(dir);
    result.temporary_work_dir = m_owns_work_dir;

    // Everything is checked before anything is written or run: a message
    // whose third block cannot run runs none.
    std::vector<planned_block> plan;
    for (const auto& block : blocks) {
        const auto* lang = detail::find_language(language_table(), block.language);
        if (!lang) {
            say("unknown language '" + block.language + "': the docker executor runs " +
                detail::known_languages(language_table()));
            result.exit_code = 1;
            return result;
        }
        const auto name = detail::block_file_name(dir, block.code, lang->extension);
        if (!name) {
            say(detail::filename_refusal(detail::filename_directive(block.code)));
            result.exit_code = 1;
            return result;
        }
        plan.push_back({*name, lang->program});
    }

    std::vector<std::string> env = {"PYTHONUNBUFFERED=1"};
    // The blocks' user has no home it can write in a read-only root (nor,
    // for the caller's uid, an entry in the image's passwd): /tmp is one.
    if ((m_options.read_only || *m_options.user != "0:0") && !m_options.env.contains("HOME")) env.push_back("HOME=/tmp");
    for (const auto& [name, value] : m_options.env) env.push_back(name + "=" + value);

    std::string report;  // the block's exit code, as its wrapper says it on stderr
    auto keep = [&](docker_stream stream, std::string_view data) {
        if (stream == docker_stream::standard_input) return;
        if (stream == docker_stream::standard_error) {
            if (report.size() < 4096) report.append(data.substr(0, 4096));
            return;
        }
        out.emit(data);
    };

    auto deadline = steady::now() + m_options.timeout;
    for (std::size_t i = 0; i < plan.size(); ++i) {
        if (const auto a = approve_block(blocks, i, result, deadline, say); a != approval::run) {
            if (a == approval::skip) continue;
            break;
        }
        ++result.blocks;
        if (m_runner && !m_runner->idle()) {
            // The last block's runner failed, or it (or its container) ended
            // since: a fresh container (and runner) for this one.
            remove_container();
            start_container();
        }
        const auto file = detail::write_block_file(dir, plan[i].name, blocks[i].code, out);
        if (!file) {
            result.exit_code = 1;
            break;
        }
        result.code_files.push_back(*file);
        if (m_options.files == "copy" && !copy_file_in(file->lexically_relative(dir).generic_string(), blocks[i].code, say)) {
            result.exit_code = 1;
            break;
        }
        if (!m_copy_note.empty()) say(std::exchange(m_copy_note, {}));
        const auto block = detail::limit_for_block(deadline, m_options.timeout, m_options.block_timeout);
        if (steady::now() >= block.deadline) {
            say(detail::timeout_line(block.limit));
            result.exit_code = 124;
            result.timed_out = true;
            break;
        }

        // Relative, as the code's own messages will show it; "./" keeps a
        // name starting with '-' from being read as an option.
        std::string relative = file->lexically_relative(dir).string();
        if (relative.starts_with("-")) relative = "./" + relative;
        if (m_runner) {
            const bool go_on = run_in_runner(plan[i].program, relative, env, block, result, out, say);
            after_block(dir, say);
            if (!go_on) break;
            continue;
        }
        report.clear();
        const docker_exec_options exec{.cmd = {"sh", "-c", block_script, "kernex-block", plan[i].program, relative},
                                       .env = env,
                                       .working_dir = "/workspace",
                                       .user = *m_options.user};
        std::string exec_id;
        try {
            exec_id = m_client.create_exec(m_container_id, exec);
        } catch (const error&) {
            // Most likely the container stopped (or went) since the last
            // block: start it (or a new one) and try once more.
            ensure_running();
            exec_id = m_client.create_exec(m_container_id, exec);
        }
        docker_stream_end end;
        try {
            end = m_client.start_exec(exec_id, {.deadline = block.deadline, .on_output = keep, .cancel_fd = m_cancel_read});
        } catch (const error& e) {
            if (e.code() != errc::docker_error) throw;
            throw error(e.code(), std::string("the block's output was cut off: ") + e.what());
        }
        const bool go_on = block_outcome(end, exec_id, report, block.deadline, block.limit, result, keep, say);
        // Whatever the outcome: nothing the block started runs on.
        const std::string replaced = end_block_processes(say);
        if (!replaced.empty()) say(replaced);
        if (m_options.files != "copy" || replaced.empty()) after_block(dir, say);  // else fetched before the container went
        if (!go_on) break;
    }
    out.finish();
    return result;
}

namespace detail {

namespace {
bool is_zero(const nlohmann::json& config, const char* key) {
    const auto it = config.find(key);
    return it != config.end() && ((it->is_number() && *it == 0) || (it->is_string() && *it == "0"));
}
}  // namespace

std::unique_ptr<code_executor> make_docker_executor(const nlohmann::json& config) {
    const executor_config c(config, "docker");
    docker_executor_options options;
    if (auto v = c.string("image")) options.image = *v;
    if (auto v = c.string("container_name")) options.container_name = *v;
    if (auto v = c.string("work_dir")) options.work_dir = *v;
    if (auto v = c.seconds("timeout")) options.timeout = *v;
    if (auto v = c.seconds("block_timeout")) options.block_timeout = *v;
    if (auto v = c.count("max_output")) options.max_output = *v;
    if (auto v = c.count("max_output_head")) options.max_output_head = *v;
    if (auto v = c.boolean("save_full_output")) options.save_full_output = *v;
    detail::output_cap{options.max_output, options.max_output_head}.check("docker");
    if (auto v = c.environment("env")) options.env = std::move(*v);
    if (auto v = c.string("network_mode")) options.network_mode = *v;
    // 0 (or "0") for memory and pids_limit: no limit.
    if (is_zero(config, "memory")) options.memory.reset();
    else if (auto v = c.bytes("memory")) options.memory = *v;
    if (auto v = c.positive("cpus")) options.cpus = *v;
    if (is_zero(config, "pids_limit")) options.pids_limit.reset();
    else if (auto v = c.count("pids_limit")) options.pids_limit = static_cast<std::int64_t>(*v);
    if (auto v = c.string("user")) options.user = *v;
    if (auto v = c.boolean("read_only")) options.read_only = *v;
    if (auto v = c.boolean("no_new_privileges")) options.no_new_privileges = *v;
    if (auto v = c.string_list("cap_add")) options.cap_add = std::move(*v);
    if (auto v = c.boolean("auto_remove")) options.auto_remove = *v;
    if (auto v = c.boolean("stop_container")) options.stop_container = *v;
    if (auto v = c.string("docker_host")) options.docker_host = *v;
    if (auto v = c.string("files")) options.files = *v;
    if (auto v = c.bytes("max_copy_back")) options.max_copy_back = *v;
    read_docker_tls(c, options.tls);
    if (auto v = c.seconds("request_timeout")) options.request_timeout = *v;
    if (auto v = c.boolean("resident_runner")) options.resident_runner = *v;
    return std::make_unique<docker_executor>(std::move(options));
}

}  // namespace detail

}  // namespace kernex
