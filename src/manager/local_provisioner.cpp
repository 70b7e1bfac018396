// local_provisioner: the kernel as a child process of ours, in its own
// session and process group under its reaper (child_process), its output in
// a log file beside the connection file. Death is seen on the reaper's
// pidfd. If kernex dies, the reaper kills the kernel's whole tree and
// removes the connection file, the log and the ipc sockets. The kernel gets
// the environment policy's environment (confine/environment.hpp) and, with
// kernel_options::sandbox, runs in the bubblewrap sandbox with its
// connection file and ipc sockets in a private dir bound inside.
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "confine/environment.hpp"
#include "confine/sandbox.hpp"
#include "connection/private_dirs.hpp"
#include "kernex/error.hpp"
#include "kernex/process.hpp"
#include "manager/provisioner.hpp"

namespace kernex::detail {

namespace {

namespace fs = std::filesystem;

std::string read_tail(const fs::path& path, std::size_t max_bytes) {
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
    explicit local_provisioner(std::optional<sandbox_options> sandbox) : m_sandbox(std::move(sandbox)) {
        if (!m_sandbox) return;
        sandbox_program();  // refuses now, with how to enable it
        try {
            const fs::path runtime = jupyter_runtime_dir();
            create_private_dirs(runtime);
            std::string pattern = (runtime / "sandbox-XXXXXX").string();
            if (!::mkdtemp(pattern.data())) throw error(errc::io_error, "cannot make a private dir in " + runtime.string());
            m_private_dir = fs::canonical(pattern);
        } catch (const fs::filesystem_error& e) {
            throw error(errc::io_error, std::string("cannot make the kernel's private dir: ") + e.what());
        }
    }

    ~local_provisioner() override {
        m_proc.stop(std::chrono::milliseconds(0));
        std::error_code ec;
        if (!m_private_dir.empty()) fs::remove_all(m_private_dir, ec);
    }

    // A sandboxed kernel has no network: ipc sockets and the connection
    // file in the private dir, the one path bound into the sandbox for them.
    void adjust_layout(kernel_layout& layout) override {
        if (!m_sandbox) return;
        layout.conn_file = m_private_dir / layout.conn_file.filename();
        layout.base.transport = "ipc";
        layout.base.ip = (m_private_dir / "kernel").string();
        if (layout.base.ip.size() + 6 >= sizeof(sockaddr_un::sun_path))  // "-65535"
            throw error(errc::invalid_argument, "the ipc socket paths under " + m_private_dir.string() +
                                                    " are too long for unix sockets: set JUPYTER_RUNTIME_DIR to a "
                                                    "shorter path");
    }

    void launch(const launch_request& request) override {
        spawn_options so;
        so.argv = request.argv;
        so.cwd = request.cwd;
        so.inherit_environment = false;
        so.env = code_environment(request.env, request.inherit_env);
        so.env["JPY_PARENT_PID"] = std::to_string(::getpid());
        so.stdout_mode = output_mode::file;
        so.stderr_mode = output_mode::file;
        so.log_file = request.log_file;
        so.remove_if_orphaned = {request.conn_file, request.log_file};
        if (request.conn.transport == "ipc")
            for (auto port : {request.conn.shell_port, request.conn.iopub_port, request.conn.stdin_port,
                              request.conn.control_port, request.conn.hb_port})
                so.remove_if_orphaned.push_back(request.conn.ip + "-" + std::to_string(port));
        if (m_sandbox) {
            // Our pid means nothing in the sandbox's pid namespace, where the
            // kernel's parent is pid 1: ipykernel would take that for its
            // parent's death. The reaper and --die-with-parent end it instead.
            so.env.erase("JPY_PARENT_PID");
            so.env = sandbox_environment(std::move(so.env), {});
            so.rlimits = sandbox_rlimits(*m_sandbox);
            const fs::path work = fs::canonical(request.cwd.value_or(fs::current_path()));
            const auto program = find_program(so.argv.at(0), sandbox_path(), work);
            if (!program)
                throw error(errc::launch_failed, "cannot run '" + so.argv[0] + "' in the sandbox: not found in " +
                                                     sandbox_path() + " (only the system's directories are visible)");
            so.argv[0] = fs::absolute(*program).string();
            sandbox_request view{.work_dir = work, .read_write = {m_private_dir}, .read_only = m_sandbox->read_only};
            so.argv = sandbox_argv(view, so.argv);
            so.remove_if_orphaned.push_back(m_private_dir);  // last: removed once empty
        }
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
    std::optional<sandbox_options> m_sandbox;
    fs::path m_private_dir;
    child_process m_proc;
    fs::path m_log_file;
};

}  // namespace

std::unique_ptr<provisioner> make_local_provisioner(const std::optional<sandbox_options>& sandbox) {
    return std::make_unique<local_provisioner>(sandbox);
}

}  // namespace kernex::detail
