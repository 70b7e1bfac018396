// docker_executor: runs each code block in a Docker container that sees only
// its work dir (bound at /workspace), with no network unless asked, memory,
// CPU and process limits, one timeout for the whole execute() call and a cap
// on the output kept. Speaks the Docker Engine API (docker_client); never
// runs the docker CLI and never pulls an image. Stateless between blocks but
// for the files in the work dir (and the container's own filesystem).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kernex/docker_client.hpp"
#include "kernex/executor.hpp"

namespace kernex {

struct docker_executor_options {
    // Must be present in the daemon: a missing image is an error saying how to get it.
    std::string image = "python:3-slim";
    // Unset: kernex-<12 random hex digits>.
    std::optional<std::string> container_name;
    // The host dir bound read-write at /workspace, where blocks are written
    // and run; created if missing. Unset: a fresh temporary dir that stop() removes.
    std::optional<std::filesystem::path> work_dir;
    // For one execute() call, all its blocks together.
    std::chrono::milliseconds timeout{60'000};
    // Bytes of output kept per execute() call; the rest is read and counted.
    std::size_t max_output = 1u << 20;
    // Added to the blocks' environment.
    std::map<std::string, std::string> env;
    // The container's network: "none" (no interface but lo), or "bridge",
    // "host", a network's name.
    std::string network_mode = "none";
    // Limits: memory in bytes (swap included: none beyond it), CPUs (1.5 =
    // one and a half), processes. Unset: the daemon's defaults (none).
    std::optional<std::uint64_t> memory;
    std::optional<double> cpus;
    std::optional<std::int64_t> pids_limit;
    // Who the blocks run as, "uid:gid" or a name in the image. Unset: the
    // caller's uid:gid, so that files the blocks write in the work dir belong
    // to the caller (and a temporary work dir can be removed). "": the image's user.
    std::optional<std::string> user;
    // As in AG2: stop() (and the destructor) stops the container, and removes
    // it when auto_remove. stop_container = false leaves it running.
    bool auto_remove = true;
    bool stop_container = true;
    // unix:// or tcp:// address of the daemon; empty: $DOCKER_HOST, else unix:///var/run/docker.sock.
    std::string docker_host;
    // Each Engine API request's deadline (creating, starting, inspecting), apart from the code's own timeout.
    std::chrono::milliseconds request_timeout{30'000};
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
    void ensure_running();
    // DELETE ?force: killed and removed. noexcept: the daemon may be gone.
    void remove_container() noexcept;
    // Kills every process of the block tagged with token, from inside the container.
    void kill_block(const std::string& token);

    docker_executor_options m_options;
    docker_client m_client;
    std::filesystem::path m_work_dir;
    bool m_owns_work_dir = false;
    std::string m_container_id;
    std::string m_container_name;
    int m_cancel_read = -1;  // self-pipe: interrupt() writes, the exec stream's reader polls
    int m_cancel_write = -1;
};

}  // namespace kernex
