// jupyter_executor: runs code blocks statefully in one Jupyter kernel
// session (started from a kernelspec, locally, in a Docker container, or on
// a Jupyter Server through its gateway URL, or an existing kernel from its
// connection file). Text
// outputs go to code_result::output; images and HTML
// are saved to output_dir and listed in output_files. Errors give exit_code 1
// with the traceback (ANSI colours stripped); a timeout interrupts the
// kernel, keeps the partial output, gives exit_code 124, and the session
// stays usable.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "kernex/executor.hpp"
#include "kernex/kernel_client.hpp"
#include "kernex/kernel_manager.hpp"
#include "kernex/remote_kernel.hpp"

namespace kernex {

struct jupyter_executor_options {
    std::string kernel_name = "python3";
    // Use this running kernel instead of starting one (restart() is then
    // unavailable; stop() leaves it running, for the next executor: an
    // agent's state across turns). A bare name is looked up as
    // find_connection_file does (kernel-ID.json in the runtime dir).
    std::optional<std::filesystem::path> connection_file{};
    // With gateway: use this kernel already on the server (one of GET
    // /api/kernels) instead of starting one; stop() leaves it running.
    std::optional<std::string> kernel_id{};
    // The kernel's working directory (a kernel kernex starts).
    std::optional<std::filesystem::path> work_dir{};
    // Where images and HTML are saved; default: work_dir, else the current directory.
    std::optional<std::filesystem::path> output_dir{};
    // Their names: <output_stem>-block<N>-<n>.<ext> (the nth rich output of
    // block N of a call; a taken name gets -2, -3...). kernex exec: the message
    // file's stem, or "stdin".
    std::string output_stem = "output";
    // For one execute() call, all its blocks together.
    std::chrono::milliseconds timeout{60'000};
    // For each block on its own (within timeout); unset: only timeout.
    std::optional<std::chrono::milliseconds> block_timeout{};
    std::size_t max_output = 1u << 20;
    // Of those, the first bytes kept (passed on as they come); the last
    // max_output - max_output_head are kept too, and a line between them
    // says how many were dropped. Unset: 60 % of max_output.
    std::optional<std::size_t> max_output_head{};
    // Keep all of the output in a new file of the work dir too
    // (code_result::full_output_file), named in the output when some was dropped.
    bool save_full_output = false;
    std::chrono::milliseconds startup_timeout{60'000};
    // A kernel kernex starts (locally or in a container) gets a clean
    // environment (kernel_options: PATH, HOME, LANG, LC_*, TERM, TZ, USER),
    // then its kernelspec's env, then env; inherit_env: all of kernex's.
    std::map<std::string, std::string> env{};
    bool inherit_env = false;
    // Start the kernel on this Jupyter Server / gateway instead of locally
    // (work_dir then only sets the default output_dir).
    std::optional<gateway_options> gateway{};
    // Start the kernel in a Docker container (see docker_kernel_options):
    // work_dir, unless docker->work_dir is set, is bound at /workspace, and
    // images and HTML are saved there (or to output_dir) by kernex on the host.
    std::optional<docker_kernel_options> docker{};
};

class jupyter_executor final : public code_executor {
public:
    // Starts (or connects to) the kernel and asks its language. Throws
    // kernex::error as kernel_manager::start / kernel_client do.
    explicit jupyter_executor(jupyter_executor_options options = {});
    ~jupyter_executor() override;

    // The kernel's language (language_info.name), e.g. "python".
    const std::string& language() const noexcept { return m_language; }

    // Restarts the kernel: a fresh session. Throws kernex::error(unsupported)
    // for a kernel kernex did not start.
    void restart() override;
    void stop() noexcept override;
    // Interrupts the running cell (thread-safe).
    void interrupt() noexcept override;

    // True when a block labelled `language` can run on a kernel of `kernel_language`.
    static bool accepts(std::string_view kernel_language, std::string_view language);

protected:
    code_result execute_blocks(const std::vector<code_block>& blocks, const output_handler& on_output) override;

private:
    kernel_client& client();

    jupyter_executor_options m_options;
    std::optional<kernel_manager> m_manager;
    std::optional<kernel_client> m_client;  // for an existing kernel
    std::optional<remote_kernel> m_attached;  // for an existing kernel on a server
    std::string m_language;
    std::filesystem::path m_output_dir;
    std::atomic<bool> m_interrupted{false};
};

}  // namespace kernex
