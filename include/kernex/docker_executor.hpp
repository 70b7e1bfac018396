// docker_executor: runs each code block in a Docker container that sees only
// its work dir (bound at /workspace), confined by default (the caller's
// uid:gid, every capability dropped, no-new-privileges, a read-only root with
// a tmpfs /tmp, no network, 1 GiB of memory, 256 processes: each loosened by
// an option), with one timeout for the whole execute() call and a cap on the
// output kept. After every block nothing it started runs on in the container
// (checked from outside through the Engine API; a container whose processes
// cannot be ended is replaced). Should kernex be killed, a reaper process
// removes the container and a temporary work dir, and the next kernex that
// starts a docker executor or kernel removes what is left of dead ones.
// Speaks the Docker Engine API (docker_client); never runs the docker CLI and
// never pulls an image. Stateless between blocks but for the files in the
// work dir (and the container's /tmp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernex/docker_client.hpp"
#include "kernex/executor.hpp"

namespace kernex {

namespace docker {
class nosuid_bind;
class reaper;
}
namespace detail {
class runner_session;
class block_output;
struct block_limit;
}

struct docker_executor_options {
    // Must be present in the daemon: a missing image is an error saying how to get it.
    std::string image = "python:3-slim";
    // Unset: kernex-<12 random hex digits>.
    std::optional<std::string> container_name;
    // The host dir bound read-write at /workspace, where blocks are written
    // and run; created if missing. Unset: a fresh temporary dir that stop() removes.
    // With files "copy", its mirror: what it holds goes into the container's
    // /workspace when the container starts, what the blocks write there comes back.
    std::optional<std::filesystem::path> work_dir;
    // How files reach the container. "bind": the work dir is bound at
    // /workspace (the daemon must see this machine's disk). "copy": the
    // container's /workspace is a tmpfs volume of its own; the work dir's
    // files and each block's code file go in through the Engine API's
    // archive endpoint, and after each block the regular files the blocks
    // wrote there come back (links, devices, FIFOs and names leaving the dir
    // refused and said; max_copy_back bytes at most). Empty: bind for a
    // unix:// daemon, copy for a tcp:// one (a bind mount would name a path
    // on the daemon's machine). The result's notes say which ran.
    std::string files;
    // With files "copy": the bytes of files copied back after a block (and
    // put in at start) at most; the rest is left and said.
    std::uint64_t max_copy_back = std::uint64_t{256} << 20;
    // For one execute() call, all its blocks together.
    std::chrono::milliseconds timeout{60'000};
    // For each block on its own (within timeout); unset: only timeout.
    std::optional<std::chrono::milliseconds> block_timeout{};
    // Bytes of output kept per execute() call; the rest is read and counted.
    std::size_t max_output = 1u << 20;
    // Of those, the first bytes kept (passed on as they come); the last
    // max_output - max_output_head are kept too, and a line between them
    // says how many were dropped. Unset: 60 % of max_output.
    std::optional<std::size_t> max_output_head{};
    // Keep all of the output in a new file of the work dir too
    // (code_result::full_output_file), named in the output when some was dropped.
    bool save_full_output = false;
    // Added to the blocks' environment.
    std::map<std::string, std::string> env;
    // The container's network: "none" (no interface but lo), or "bridge",
    // "host", a network's name.
    std::string network_mode = "none";
    // Limits: memory in bytes (swap included: none beyond it), CPUs (1.5 =
    // one and a half), processes. Unset (nullopt): none.
    std::optional<std::uint64_t> memory = std::uint64_t{1} << 30;
    std::optional<double> cpus;
    std::optional<std::int64_t> pids_limit = 256;
    // Who the blocks run as, "uid:gid" or a name in the image. Unset: the
    // caller's uid:gid, so that files the blocks write in the work dir belong
    // to the caller (and a temporary work dir can be removed). "": the image's
    // user. The container's first process runs as another uid (65534, or
    // 65533 when the blocks are 65534), out of the blocks' reach.
    std::optional<std::string> user;
    // The root filesystem read-only, with a tmpfs at /tmp (HOME is /tmp
    // unless env sets it). false: writable, as Docker's default.
    bool read_only = true;
    // no-new-privileges: a setuid binary or file capability grants nothing.
    bool no_new_privileges = true;
    // Every capability is dropped but these ("NET_BIND_SERVICE", ...).
    std::vector<std::string> cap_add;
    // As in AG2: stop() (and the destructor) stops the container, and removes
    // it when auto_remove. stop_container = false leaves it running (and then
    // nothing removes it should kernex die either).
    bool auto_remove = true;
    bool stop_container = true;
    // unix:// or tcp:// address of the daemon; empty: $DOCKER_HOST, else unix:///var/run/docker.sock.
    std::string docker_host;
    // TLS to a tcp:// daemon (config keys tls_verify, tls_ca, tls_cert,
    // tls_key); unset: DOCKER_TLS_VERIFY and DOCKER_CERT_PATH decide, as for the docker CLI.
    docker_tls_options tls;
    // Each Engine API request's deadline (creating, starting, inspecting), apart from the code's own timeout.
    std::chrono::milliseconds request_timeout{30'000};
    // The container's pid 1 is kernex's resident runner (copied in read-only
    // through the archive endpoint, fed blocks over the attached stream): a
    // block costs a process spawn in the container instead of an Engine API
    // exec. It needs a plain connection (not TLS), stop_container, a cap_add
    // without SYS_PTRACE (or ALL) and an image whose sh can exec a static
    // program of this machine's architecture; when one of these is missing,
    // each block is an exec, as false asks, and the result's notes say why.
    bool resident_runner = true;
};

class docker_executor final : public code_executor {
public:
    // Creates the work dir and the container, and starts the container.
    // Throws kernex::error: docker_error when the daemon is unreachable or
    // refuses, not_found when the image is missing (saying how to get it),
    // invalid_argument for a bad option, io_error when the work dir cannot be made.
    explicit docker_executor(docker_executor_options options = {});
    ~docker_executor() override;
    docker_executor(const docker_executor&) = delete;
    docker_executor& operator=(const docker_executor&) = delete;

    // The host dir bound at /workspace.
    const std::filesystem::path& work_dir() const noexcept { return m_work_dir; }
    // "bind" or "copy": how files reach the container (docker_executor_options::files).
    const std::string& files_mode() const noexcept { return m_options.files; }
    // The container's id and name (empty after stop()).
    const std::string& container_id() const noexcept { return m_container_id; }
    const std::string& container_name() const noexcept { return m_container_name; }

    // Restarts the container: its processes are gone, its filesystem and the work dir stay.
    // Throws kernex::error(docker_error) when the daemon refuses.
    void restart() override;
    // Stops and removes the container (as stop_container and auto_remove say)
    // and removes a temporary work dir. A later execute() makes new ones.
    void stop() noexcept override;
    void interrupt() noexcept override;

    // The languages it knows, each with its aliases: {"python", "py", "python3"}, ...
    static std::vector<std::vector<std::string>> languages();

protected:
    code_result execute_blocks(const std::vector<code_block>& blocks, const output_handler& on_output) override;

private:
    void make_work_dir();
    void start_container();
    // files "copy": the work dir's regular files into the container's /workspace.
    void copy_work_dir_in();
    // files "copy": one file (name relative to the work dir) into
    // /workspace, on the runner's stream when there is one, else through the
    // archive endpoint. False (and said) when the runner could not make it.
    bool copy_file_in(const std::string& name, const std::string& content,
                      const std::function<void(const std::string&)>& say);
    // files "copy": what the blocks wrote in /workspace, back into the work
    // dir (packed by the runner when there is one, else through the archive
    // endpoint; either way unpacked as hostile); what was left out is said.
    void copy_back(const std::function<void(const std::string&)>& say);
    // The owner and modes the files put into /workspace get (files "copy").
    struct copy_owner {
        unsigned uid = 0, gid = 0;
        bool known = false;  // the blocks' user is numeric: files are theirs; else open to all
    };
    copy_owner owner_in_container() const;
    void ensure_running();
    // DELETE ?force: killed and removed. noexcept: the daemon may be gone.
    void remove_container() noexcept;
    // After a block: nothing of the blocks' may run on. Returns a line to say
    // when the container had to be replaced (its processes could not be
    // ended from inside), else empty. Throws kernex::error(docker_error)
    // when even that failed.
    std::string end_block_processes(const std::function<void(const std::string&)>& say);
    // The processes in the container that are not its first process's (not zombies).
    std::size_t foreign_processes();
    // How a block's exec ended, into result. Returns true to run the next block.
    // deadline: the block's; limit: the timeout a timed-out block's message names.
    bool block_outcome(docker_stream_end end, const std::string& exec_id, std::string& report,
                       std::chrono::steady_clock::time_point deadline, std::chrono::milliseconds limit,
                       code_result& result,
                       const std::function<void(docker_stream, std::string_view)>& keep,
                       const std::function<void(const std::string&)>& say);

    docker_executor_options m_options;
    docker_client m_client;
    std::filesystem::path m_work_dir;
    bool m_owns_work_dir = false;
    std::string m_container_id;
    std::string m_container_name;
    std::string m_keeper_uid;  // the container's first process runs as this uid
    std::string m_copy_note;   // files "copy": what copy_work_dir_in left out, said at the next block
    std::unique_ptr<docker::reaper> m_reaper;  // removes the container and a temporary work dir should we die
    std::unique_ptr<docker::nosuid_bind> m_work_bind;  // the container's bind source (after m_reaper: it tells it)
    // With the resident runner: the container's pid 1, over the attached stream.
    std::unique_ptr<detail::runner_session> m_runner;
    std::string m_runner_note;                  // why blocks are execs, when the runner was wanted
    void start_runner();
    // One block through the runner; false when the blocks stop here.
    bool run_in_runner(const std::string& program, const std::string& relative, const std::vector<std::string>& env,
                       const detail::block_limit& block, code_result& result, detail::block_output& out,
                       const std::function<void(const std::string&)>& say);
    // Whether the container stopped under a block (said, with why); false while it runs.
    bool stopped_under_block(const std::function<void(const std::string&)>& say);
    // After every block: files back (copy) or setuid bits cleared (bind).
    void after_block(const std::filesystem::path& dir, const std::function<void(const std::string&)>& say);
    int m_cancel_read = -1;  // self-pipe: interrupt() writes, the exec stream's reader polls
    int m_cancel_write = -1;
};

}  // namespace kernex
