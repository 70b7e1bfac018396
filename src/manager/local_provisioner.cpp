// local_provisioner: the kernel as a child process of ours, in its own
// session and process group (child_process), its output in a log file
// beside the connection file. Death is seen on the child's pidfd.
#include <unistd.h>

#include <fstream>

#include "kernex/process.hpp"
#include "manager/provisioner.hpp"

namespace kernex::detail {

namespace {

std::string read_tail(const std::filesystem::path& path, std::size_t max_bytes) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    in.seekg(0, std::ios::end);
    auto size = static_cast<std::size_t>(in.tellg());
    auto start = size > max_bytes ? size - max_bytes : 0;
    in.seekg(static_cast<std::streamoff>(start));
    std::string text(size - start, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    return text;
}

class local_provisioner final : public provisioner {
public:
    void launch(const launch_request& request) override {
        spawn_options so;
        so.argv = request.argv;
        so.cwd = request.cwd;
        so.env = request.env;
        so.env["JPY_PARENT_PID"] = std::to_string(::getpid());
        so.stdout_mode = output_mode::file;
        so.stderr_mode = output_mode::file;
        so.log_file = request.log_file;
        m_log_file = request.log_file;
        m_proc = child_process(so);
    }

    bool signal(int sig) noexcept override { return m_proc.signal_group(sig); }
    int exit_fd() const noexcept override { return m_proc.pidfd(); }
    bool running() noexcept override { return m_proc.running(); }
    bool wait_until(std::chrono::steady_clock::time_point deadline) noexcept override {
        return m_proc.wait_until(deadline).has_value();
    }
    void stop(std::chrono::milliseconds grace) noexcept override { m_proc.stop(grace); }
    std::string exit_text() const override {
        return m_proc.status() ? describe_status(*m_proc.status()) : std::string();
    }
    int pid() const noexcept override { return m_proc.pid(); }
    std::string log_tail(std::size_t max_bytes) override { return read_tail(m_log_file, max_bytes); }

private:
    child_process m_proc;
    std::filesystem::path m_log_file;
};

}  // namespace

std::unique_ptr<provisioner> make_local_provisioner() { return std::make_unique<local_provisioner>(); }

}  // namespace kernex::detail
