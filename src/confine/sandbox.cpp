#include "confine/sandbox.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <mutex>
#include <optional>

#include "kernex/error.hpp"
#include "kernex/process.hpp"

namespace kernex::detail {

namespace {

namespace fs = std::filesystem;

// What of /etc never enters the sandbox: password hashes, host keys,
// private TLS keys, Kerberos keytabs.
bool hidden_name(const std::string& rel) {
    static const char* const exact[] = {"shadow",       "shadow-",        "gshadow",       "gshadow-",
                                        "security/opasswd", "ssl/private", "krb5.keytab", "sudoers",
                                        "sudoers.d",     "ssh/ssh_host_ecdsa_key", "ssh/ssh_host_ed25519_key",
                                        "ssh/ssh_host_rsa_key", "ssh/ssh_host_dsa_key"};
    for (const char* e : exact)
        if (rel == e) return true;
    // Any other private host key (ssh_host_*_key, not .pub).
    return rel.starts_with("ssh/ssh_host_") && rel.ends_with("_key");
}

// /etc read-only as a whole (one mount: binding its ~150 entries one by one
// cost 100 ms per block), its secrets covered: each secret file by an empty
// one (/dev/null, read-only), a secret directory by an empty tmpfs.
void bind_etc(std::vector<std::string>& args) {
    args.insert(args.end(), {"--ro-bind", "/etc", "/etc"});
    std::error_code ec;
    auto cover = [&](const fs::path& dir, const std::string& prefix, auto&& self) -> void {
        for (const auto& entry : fs::directory_iterator(dir, ec)) {
            const std::string rel = prefix + entry.path().filename().string();
            std::error_code e2;
            if (entry.is_symlink(e2)) continue;  // resolves to a covered path or outside /etc
            const bool dir_entry = entry.is_directory(e2);
            if (hidden_name(rel)) {
                if (dir_entry)
                    args.insert(args.end(), {"--tmpfs", "/etc/" + rel, "--remount-ro", "/etc/" + rel});
                else
                    args.insert(args.end(), {"--ro-bind", "/dev/null", "/etc/" + rel});
            } else if (dir_entry && prefix.empty() && (rel == "ssh" || rel == "ssl" || rel == "security")) {
                self(entry.path(), rel + "/", self);
            }
        }
    };
    cover("/etc", "", cover);
}

}  // namespace

bool sandbox_hides(const fs::path& etc_relative) { return hidden_name(etc_relative.string()); }

const std::string& sandbox_path() {
    static const std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    return path;
}

const fs::path& sandbox_program() {
    static std::once_flag once;
    static std::optional<fs::path> program;
    static std::string failure;
    std::call_once(once, [] {
        const char* host_path = std::getenv("PATH");
        auto found = find_program("bwrap", host_path ? host_path : "");
        if (!found) found = find_program("bwrap", sandbox_path());
        if (!found) {
            failure = "the sandbox needs bubblewrap, which is not installed: apt-get install bubblewrap "
                      "(or run without sandbox)";
            return;
        }
        // The namespaces the sandbox uses, tried once: without user
        // namespaces (for a non-root user) bwrap cannot make them.
        spawn_options probe;
        probe.argv = {found->string(), "--unshare-pid", "--unshare-net", "--die-with-parent",
                      "--ro-bind", "/", "/", "--", "/bin/true"};
        probe.inherit_environment = false;
        probe.env = {{"PATH", sandbox_path()}};
        run_options limits;
        limits.timeout = std::chrono::seconds(20);
        limits.max_output = 4096;
        const run_result r = run_process(probe, limits);
        if (r.exit_code != 0) {
            failure = "the sandbox cannot start here: bwrap failed (" + r.output.substr(0, r.output.find('\n')) +
                      "). It needs user namespaces: on Debian `sysctl -w kernel.unprivileged_userns_clone=1` and "
                      "`sysctl -w user.max_user_namespaces=10000`; in a container, one that allows them "
                      "(e.g. docker run --security-opt seccomp=unconfined --security-opt apparmor=unconfined)";
            return;
        }
        program = *found;
    });
    if (!program) throw error(errc::launch_failed, failure);
    return *program;
}

namespace {

std::vector<std::string> bwrap_argv(const sandbox_request& request, const std::vector<std::string>& command,
                                    const std::string& runner) {
    std::vector<std::string> args = {sandbox_program().string()};
    args.insert(args.end(), {"--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                             "--unshare-cgroup-try", "--die-with-parent", "--new-session"});
    if (!runner.empty())
        args.insert(args.end(), {"--as-pid-1", "--cap-drop", "ALL"});
    std::error_code ec;
    args.insert(args.end(), {"--ro-bind", "/usr", "/usr"});
    for (const char* top : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
        const fs::path p(top);
        if (fs::is_symlink(p, ec))
            args.insert(args.end(), {"--symlink", fs::read_symlink(p, ec).string(), top});
        else if (fs::is_directory(p, ec))
            args.insert(args.end(), {"--ro-bind", top, top});
    }
    bind_etc(args);
    args.insert(args.end(), {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"});
    for (const auto& p : request.read_only)
        if (fs::exists(p, ec)) args.insert(args.end(), {"--ro-bind", p.string(), p.string()});
    for (const auto& p : request.read_write) args.insert(args.end(), {"--bind", p.string(), p.string()});
    if (!runner.empty()) args.insert(args.end(), {"--ro-bind", runner, sandbox_runner_path});
    args.insert(args.end(), {"--bind", request.work_dir.string(), request.work_dir.string(), "--chdir",
                             request.work_dir.string(), "--"});
    args.insert(args.end(), command.begin(), command.end());
    return args;
}

}  // namespace

std::vector<std::string> sandbox_argv(const sandbox_request& request, const std::vector<std::string>& command) {
    return bwrap_argv(request, command, {});
}

std::vector<std::string> sandbox_runner_argv(const sandbox_request& request, const std::string& runner) {
    return bwrap_argv(request, {sandbox_runner_path}, runner);
}

std::map<std::string, std::string> sandbox_environment(std::map<std::string, std::string> env,
                                                       const std::vector<fs::path>& path_prefix) {
    std::string path;
    for (const auto& p : path_prefix) path.append(fs::absolute(p).string()).append(":");
    env["PATH"] = path + sandbox_path();
    env["HOME"] = "/tmp";
    return env;
}

std::vector<std::pair<int, std::uint64_t>> sandbox_rlimits(const sandbox_options& options) {
    std::vector<std::pair<int, std::uint64_t>> limits;
    if (options.cpu_seconds) limits.emplace_back(RLIMIT_CPU, *options.cpu_seconds);
    if (options.address_space) limits.emplace_back(RLIMIT_AS, *options.address_space);
    if (options.file_size) limits.emplace_back(RLIMIT_FSIZE, *options.file_size);
    if (options.open_files) limits.emplace_back(RLIMIT_NOFILE, *options.open_files);
    if (options.processes) limits.emplace_back(RLIMIT_NPROC, *options.processes);
    return limits;
}

}  // namespace kernex::detail
