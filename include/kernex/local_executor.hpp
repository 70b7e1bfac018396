// local_executor: runs each code block as a file in a local process (bash,
// sh, python3, node, pwsh), in a work dir, with one timeout for the whole
// execute() call and a cap on the output kept. Stateless: nothing survives
// from one block to the next but the files in the work dir: every process a
// block starts is killed when it ends (see process.hpp's reaper), and when
// kernex dies. Blocks get a clean environment unless asked otherwise, and
// can run in a bubblewrap sandbox (sandbox.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernex/executor.hpp"
#include "kernex/sandbox.hpp"

namespace kernex {

class child_process;

namespace detail {
struct sandbox_request;
class runner_session;
class dir_keeper;
}

struct local_executor_options {
    // Where blocks are written and run; created if missing. Unset: a fresh
    // temporary dir that stop() removes.
    std::optional<std::filesystem::path> work_dir;
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
    // Added to (or overriding) the environment blocks get: by default only
    // PATH, HOME, LANG, LC_*, TERM, TZ and USER of kernex's own environment.
    std::map<std::string, std::string> env;
    // The whole of kernex's environment instead (API keys and tokens included).
    bool inherit_env = false;
    // Run every block in the bubblewrap sandbox with these limits. The
    // constructor throws kernex::error(launch_failed) when the sandbox
    // cannot run here (bwrap missing, no user namespaces).
    std::optional<sandbox_options> sandbox;
    // Put in front of PATH, in this order (a virtualenv's bin dir, say). The
    // interpreters are looked up on the resulting PATH.
    std::vector<std::filesystem::path> path_prefix;
    // Language (or alias) -> program to run its files with, a name looked up
    // on PATH or a path: {"python", "/opt/venv/bin/python"}.
    std::map<std::string, std::string> interpreters;
};

class local_executor final : public code_executor {
public:
    // Creates the given work dir (a temporary one is made when first needed:
    // by the first execute() or work_dir()). Throws kernex::error:
    // invalid_argument for an interpreter given for an unknown language,
    // io_error when the work dir cannot be created.
    explicit local_executor(local_executor_options options = {});
    ~local_executor() override;
    local_executor(const local_executor&) = delete;
    local_executor& operator=(const local_executor&) = delete;

    // The work dir; a temporary one is made now if there is none yet (none
    // before the first execute(), a new one after stop()). Throws
    // kernex::error(io_error) when it cannot be made.
    const std::filesystem::path& work_dir();

    void restart() override {}
    // Removes the temporary work dir, if it made one. A later execute() makes a new one.
    void stop() noexcept override;
    void interrupt() noexcept override;

    // The languages it knows, each with its aliases: {"python", "py", "python3"}, ...
    static std::vector<std::vector<std::string>> languages();

protected:
    code_result execute_blocks(const std::vector<code_block>& blocks, const output_handler& on_output) override;

private:
    // Makes the work dir; a temporary one is held by a keeper when with_keeper
    // (no block's reaper will hold it right away).
    void make_work_dir(bool with_keeper);
    // Between calls: a temporary work dir that no reaper holds gets a keeper.
    void hold_work_dir() noexcept;
    detail::sandbox_request sandbox_view(const std::filesystem::path& dir) const;
    // The sandbox's resident runner for dir, started if needed; nullptr (and
    // why in m_runner_failure) when it cannot start: each block then gets a bwrap of its own.
    detail::runner_session* sandbox_runner(const std::filesystem::path& dir);

    local_executor_options m_options;
    std::filesystem::path m_work_dir;
    bool m_owns_work_dir = false;
    // What removes a temporary work dir if kernex dies when no block runs
    // (during a block, the block's own reaper does): the reaper of the last
    // block, which stays (spawn_options::linger) until the next block's
    // reaper holds the dir or the dir goes; or, when the dir must be held
    // before a block ran (a prompt, a full-output file, the sandbox's runner),
    // kernex-keeper, a small process that does nothing else.
    std::unique_ptr<child_process> m_holder;
    std::unique_ptr<detail::dir_keeper> m_keeper;
    int m_cancel_read = -1;   // self-pipe: interrupt() writes, run_process polls
    int m_cancel_write = -1;
    // With a sandbox: one bwrap for the executor's session, whose pid 1 (the
    // runner, src/runner) runs the blocks and kills what each started.
    std::unique_ptr<detail::runner_session> m_runner;
    std::filesystem::path m_runner_dir;  // the work dir it binds
    std::string m_runner_failure;
};

}  // namespace kernex
