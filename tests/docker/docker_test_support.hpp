// What the docker suite and benchmark share: a dockerd of their own (Debian's
// docker.io, on a socket in a fresh temporary dir, never the system's), and
// the local images they run: a busybox image imported from busybox-static and
// a Python image made with debootstrap, whose tarball is cached in the build
// dir so that reruns reuse it. No registry is ever contacted.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../helpers/test_support.hpp"
#include "kernex/docker_client.hpp"
#include "kernex/process.hpp"

namespace kernex::test {

namespace docker_fs = std::filesystem;

// Unmounts whatever is mounted under dir (deepest first), so that removing
// dir cannot reach through a mount into what it shows.
inline void unmount_under(const docker_fs::path& dir) {
    std::vector<std::string> points;
    std::istringstream mounts(read_file("/proc/self/mounts"));
    std::string device, point, rest;
    const std::string prefix = dir.string() + "/";
    while (mounts >> device >> point && std::getline(mounts, rest))
        if (point == dir.string() || point.starts_with(prefix)) points.push_back(point);
    std::sort(points.begin(), points.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
    for (const auto& p : points) ::umount2(p.c_str(), MNT_DETACH);
}

inline void remove_tree(const docker_fs::path& dir) {
    if (dir.empty()) return;
    unmount_under(dir);
    std::error_code ec;
    docker_fs::remove_all(dir, ec);
}

// A dockerd of the tests' own. It dies with the test process (PR_SET_PDEATHSIG)
// even when that crashes; stop() (and the destructor) stops it by its pid,
// waits for it, and removes its dirs.
class test_dockerd {
public:
    // Starts dockerd and waits until it answers /_ping. tcp_port: also listen
    // on 127.0.0.1:tcp_port. Throws std::runtime_error with the log's tail.
    explicit test_dockerd(std::optional<unsigned short> tcp_port = {}) {
        if (::geteuid() != 0)
            throw std::runtime_error("the docker suite starts its own dockerd and needs root (CI runs as root)");
        // Short: a unix socket's path must fit in 108 bytes.
        std::string pattern = "/tmp/kxd-XXXXXX";
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
        m_dir = pattern;
        std::vector<std::string> args = {"/usr/sbin/dockerd",
                                         "--host",
                                         "unix://" + (m_dir / "docker.sock").string(),
                                         "--data-root",
                                         (m_dir / "data").string(),
                                         "--exec-root",
                                         (m_dir / "exec").string(),
                                         "--pidfile",
                                         (m_dir / "docker.pid").string(),
                                         "--bridge=none",
                                         "--iptables=false",
                                         "--ip6tables=false",
                                         "--ip-masq=false",
                                         "--userland-proxy=false",
                                         // Should it find a system containerd running and use
                                         // it, our containers stay apart from the system's.
                                         "--containerd-namespace=kernex-test",
                                         "--containerd-plugins-namespace=kernex-test-plugins"};
        if (tcp_port) {
            args.push_back("--host");
            args.push_back("tcp://127.0.0.1:" + std::to_string(*tcp_port));
        }
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        const std::string log = (m_dir / "dockerd.log").string();
        const pid_t parent = ::getpid();
        m_pid = ::fork();
        if (m_pid < 0) throw std::runtime_error("fork failed");
        if (m_pid == 0) {
            ::setsid();
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (::getppid() != parent) ::_exit(1);
            const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (out < 0 || in < 0) ::_exit(126);
            ::dup2(in, 0);
            ::dup2(out, 1);
            ::dup2(out, 2);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        kernex::docker_client probe({.host = host(), .timeout = std::chrono::seconds(5)});
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (!probe.ping(std::chrono::seconds(2))) {
            int status = 0;
            if (::waitpid(m_pid, &status, WNOHANG) == m_pid) {
                m_pid = -1;
                const std::string tail = log_tail();
                remove_tree(m_dir);
                throw std::runtime_error("dockerd exited at start:\n" + tail);
            }
            if (std::chrono::steady_clock::now() > deadline) {
                const std::string tail = log_tail();
                stop();
                throw std::runtime_error("dockerd did not answer /_ping within 60 s:\n" + tail);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    ~test_dockerd() { stop(); }
    test_dockerd(const test_dockerd&) = delete;
    test_dockerd& operator=(const test_dockerd&) = delete;

    std::string host() const { return "unix://" + (m_dir / "docker.sock").string(); }
    pid_t pid() const { return m_pid; }
    const docker_fs::path& dir() const { return m_dir; }
    kernex::docker_client client(std::chrono::milliseconds timeout = std::chrono::seconds(30)) const {
        return kernex::docker_client({.host = host(), .timeout = timeout});
    }
    std::string log_tail() const {
        const std::string text = read_file(m_dir / "dockerd.log");
        return text.size() > 3000 ? text.substr(text.size() - 3000) : text;
    }

    // SIGTERM to its pid (it stops its containers and its containerd), up to
    // 30 s, then SIGKILL; reaped. Then its mounts and dirs are removed. Idempotent.
    void stop() noexcept {
        if (m_pid > 0) {
            ::kill(m_pid, SIGTERM);
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
            int status = 0;
            while (::waitpid(m_pid, &status, WNOHANG) == 0) {
                if (std::chrono::steady_clock::now() > deadline) {
                    ::kill(m_pid, SIGKILL);
                    ::waitpid(m_pid, &status, 0);
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
            m_pid = -1;
        }
        remove_tree(m_dir);
        m_dir.clear();
    }

private:
    docker_fs::path m_dir;
    pid_t m_pid = -1;
};

// The Debian mirror apt uses on this machine (deb822 .sources or
// sources.list), for debootstrap; KERNEX_DEBIAN_MIRROR overrides it.
inline std::string debian_mirror() {
    if (const char* env = std::getenv("KERNEX_DEBIAN_MIRROR"); env && *env) return env;
    std::vector<docker_fs::path> files = {"/etc/apt/sources.list"};
    std::error_code ec;
    for (const auto& entry : docker_fs::directory_iterator("/etc/apt/sources.list.d", ec)) files.push_back(entry.path());
    for (const auto& file : files) {
        std::istringstream in(read_file(file));
        std::string line, uri;
        while (std::getline(in, line)) {
            std::istringstream words(line);
            std::string first;
            words >> first;
            if (first == "URIs:") {
                words >> uri;
            } else if (first == "Suites:" && !uri.empty() && line.find(" bookworm") != std::string::npos &&
                       uri.find("security") == std::string::npos) {
                return uri;
            } else if (first == "deb") {
                std::string word;
                words >> word;
                if (word.starts_with("[")) {
                    while (!word.ends_with("]") && words >> word) {}
                    words >> word;
                }
                std::string suite;
                words >> suite;
                if (suite == "bookworm") return word;
            } else if (first.empty()) {
                uri.clear();
            }
        }
    }
    return "http://deb.debian.org/debian";
}

inline bool image_present(kernex::docker_client& client, const std::string& image) {
    return client.request("GET", "/images/" + image + "/json").status == 200;
}

inline void run_or_throw(std::vector<std::string> argv, std::chrono::milliseconds timeout, const char* what) {
    kernex::spawn_options spawn;
    spawn.argv = std::move(argv);
    kernex::run_options limits;
    limits.timeout = timeout;
    limits.max_output = 64 * 1024;
    const kernex::run_result r = kernex::run_process(spawn, limits);
    if (r.exit_code != 0)
        throw std::runtime_error(std::string(what) + " failed (exit code " + std::to_string(r.exit_code) + "):\n" +
                                 r.output);
}

// busybox-static as an image: /bin/busybox and a symlink per applet.
inline constexpr const char* busybox_image = "kernex-test/busybox:latest";

inline void ensure_busybox_image(kernex::docker_client& client) {
    if (image_present(client, busybox_image)) return;
    std::string pattern = (docker_fs::temp_directory_path() / "kernex-busybox-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    const docker_fs::path dir = pattern;
    struct cleanup {
        docker_fs::path dir;
        ~cleanup() { remove_tree(dir); }
    } remove{dir};
    const docker_fs::path root = dir / "rootfs";
    docker_fs::create_directories(root / "bin");
    for (const char* d : {"tmp", "proc", "sys", "dev", "etc", "workspace"}) docker_fs::create_directories(root / d);
    docker_fs::permissions(root / "tmp", docker_fs::perms::all | docker_fs::perms::sticky_bit);
    docker_fs::copy_file("/bin/busybox", root / "bin" / "busybox");
    kernex::spawn_options spawn;
    spawn.argv = {"/bin/busybox", "--list"};
    const auto list = kernex::run_process(spawn, {});
    if (list.exit_code != 0) throw std::runtime_error("busybox --list failed: install busybox-static");
    std::istringstream names(list.output);
    for (std::string name; std::getline(names, name);)
        if (!name.empty() && name != "busybox" && name.find('/') == std::string::npos)
            docker_fs::create_symlink("busybox", root / "bin" / name);
    run_or_throw({"tar", "-C", root.string(), "-cf", (dir / "busybox.tar").string(), "."}, std::chrono::seconds(60),
                 "tar of the busybox rootfs");
    client.import_image(dir / "busybox.tar", "kernex-test/busybox", "latest");
}

// Python 3 (and bash, dash, coreutils) from debootstrap --variant=minbase.
inline constexpr const char* python_image = "kernex-test/python:bookworm";

// The rootfs tarball, made once per build dir (under a lock: the suite and
// the benchmark may both want it) and reused.
inline docker_fs::path python_rootfs_tarball() {
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    const docker_fs::path cache = docker_fs::path(build && *build ? build : ".") / "tests" / "docker" / "cache";
    docker_fs::create_directories(cache);
    const docker_fs::path tarball = cache / "python-bookworm.tar";
    const int lock = ::open((cache / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0 || ::flock(lock, LOCK_EX) != 0) throw std::runtime_error("cannot lock " + cache.string());
    struct unlock {
        int fd;
        ~unlock() { ::close(fd); }
    } release{lock};
    if (docker_fs::exists(tarball)) return tarball;

    const docker_fs::path root = cache / "python-rootfs";
    remove_tree(root);  // a half-made one, from a run that was stopped
    struct cleanup {
        docker_fs::path dir;
        ~cleanup() { remove_tree(dir); }
    } remove{root};
    run_or_throw({"debootstrap", "--variant=minbase", "--include=python3-minimal", "bookworm", root.string(),
                  debian_mirror()},
                 std::chrono::minutes(20), "debootstrap (the Python image for the docker suite)");
    // What a container never needs: the downloaded packages, apt's lists, docs.
    for (const char* d : {"var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale",
                          "usr/share/info"})
        remove_tree(root / d);
    docker_fs::create_directories(root / "workspace");
    const docker_fs::path partial = cache / "python-bookworm.tar.partial";
    run_or_throw({"tar", "-C", root.string(), "--one-file-system", "-cf", partial.string(), "."},
                 std::chrono::minutes(5), "tar of the Python rootfs");
    docker_fs::rename(partial, tarball);
    return tarball;
}

inline void ensure_python_image(kernex::docker_client& client) {
    if (image_present(client, python_image)) return;
    client.import_image(python_rootfs_tarball(), "kernex-test/python", "bookworm");
}

}  // namespace kernex::test
