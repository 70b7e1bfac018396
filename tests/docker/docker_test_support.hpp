// What the docker suite and benchmark share: a dockerd of their own (Debian's
// docker.io, on a socket in a fresh temporary dir, never the system's), and
// the local images they run: a busybox image imported from busybox-static, a
// Python image made with debootstrap and an ipykernel image (the same, with
// python3-ipykernel installed in it by apt in a chroot), whose tarballs are
// cached in the build dir so that reruns reuse them. No registry is ever
// contacted (the Debian mirror is, to make the tarballs once).
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
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
// dir cannot reach through a mount into what it shows. dir may be relative
// (the image cache under KERNEX_BUILD_DIR, "." when unset): /proc's mount
// points are absolute, so it is compared made absolute.
inline void unmount_under(const docker_fs::path& dir) {
    std::vector<std::string> points;
    std::istringstream mounts(read_file("/proc/self/mounts"));
    std::string device, point, rest;
    const std::string absolute = docker_fs::absolute(dir).lexically_normal().string();
    const std::string prefix = absolute + "/";
    while (mounts >> device >> point && std::getline(mounts, rest))
        if (point == absolute || point.starts_with(prefix)) points.push_back(point);
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
    // on 127.0.0.1:tcp_port; extra: more arguments (--tlsverify ...). Throws
    // std::runtime_error with the log's tail.
    explicit test_dockerd(std::optional<unsigned short> tcp_port = {}, const std::vector<std::string>& extra = {}) {
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
        args.insert(args.end(), extra.begin(), extra.end());
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

// A port that was free on 127.0.0.1 a moment ago.
inline unsigned short free_tcp_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t size = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size);
    ::close(fd);
    return ntohs(addr.sin_port);
}

// One T per test program (a suite's daemon and its images), made on first
// use and destroyed at exit. When making it failed, every later use throws
// that failure at once: the cases after it do not each wait for a dockerd
// that will not start.
template <typename T>
T& suite_once(const char* what) {
    static std::unique_ptr<T> instance;
    static std::string failure;
    if (!failure.empty()) throw std::runtime_error(failure);
    if (!instance) {
        try {
            instance = std::make_unique<T>();
        } catch (const std::exception& e) {
            failure = std::string(what) + ": " + e.what();
            throw;
        }
    }
    return *instance;
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

// Debian bookworm with Python 3 and python3-ipykernel: a kernel image.
inline constexpr const char* ipykernel_image = "kernex-test/ipykernel:bookworm";

// Mounts source on target (bind, or a filesystem of type fstype). Throws.
inline void mount_or_throw(const char* source, const docker_fs::path& target, const char* fstype, unsigned long flags) {
    if (::mount(source, target.c_str(), fstype, flags, nullptr) != 0)
        throw std::runtime_error("mount " + std::string(source) + " on " + target.string() + " failed: " +
                                 std::strerror(errno));
}

// A rootfs tarball name.tar in the build dir's cache, made once per build
// dir (under a lock: the suite and the benchmark may both want it) and
// reused: debootstrap --variant=minbase with python3-minimal, then, when
// packages are given, `apt-get install` of them inside it with chroot (with
// the host's /etc/apt bound read-only and /proc mounted: debootstrap's own
// --include cannot resolve python3-ipykernel's dependencies).
inline docker_fs::path rootfs_tarball(const std::string& name, const std::vector<std::string>& packages = {}) {
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    const docker_fs::path cache = docker_fs::path(build && *build ? build : ".") / "tests" / "docker" / "cache";
    docker_fs::create_directories(cache);
    const docker_fs::path tarball = cache / (name + ".tar");
    const int lock = ::open((cache / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0 || ::flock(lock, LOCK_EX) != 0) throw std::runtime_error("cannot lock " + cache.string());
    struct unlock {
        int fd;
        ~unlock() { ::close(fd); }
    } release{lock};
    if (docker_fs::exists(tarball)) return tarball;

    const docker_fs::path root = cache / (name + "-rootfs");
    remove_tree(root);  // a half-made one, from a run that was stopped
    struct cleanup {
        docker_fs::path dir;
        ~cleanup() { remove_tree(dir); }
    } remove{root};
    run_or_throw({"debootstrap", "--variant=minbase", "--include=python3-minimal", "bookworm", root.string(),
                  debian_mirror()},
                 std::chrono::minutes(20), ("debootstrap (the " + name + " image for the docker suite)").c_str());
    if (!packages.empty()) {
        mount_or_throw("/etc/apt", root / "etc" / "apt", nullptr, MS_BIND);
        mount_or_throw("none", root / "etc" / "apt", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY);
        mount_or_throw("proc", root / "proc", "proc", 0);
        docker_fs::copy_file("/etc/resolv.conf", root / "etc" / "resolv.conf",
                             docker_fs::copy_options::overwrite_existing);
        run_or_throw({"chroot", root.string(), "apt-get", "update"}, std::chrono::minutes(10),
                     "apt-get update in the chroot");
        std::vector<std::string> install = {"env", "DEBIAN_FRONTEND=noninteractive", "chroot", root.string(),
                                            "apt-get", "install", "-y", "--no-install-recommends"};
        install.insert(install.end(), packages.begin(), packages.end());
        run_or_throw(install, std::chrono::minutes(20), "apt-get install in the chroot");
        unmount_under(root);
    }
    // What a container never needs: the downloaded packages, apt's lists, docs.
    for (const char* d : {"var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale",
                          "usr/share/info"})
        remove_tree(root / d);
    docker_fs::create_directories(root / "workspace");
    const docker_fs::path partial = cache / (name + ".tar.partial");
    run_or_throw({"tar", "-C", root.string(), "--one-file-system", "-cf", partial.string(), "."},
                 std::chrono::minutes(5), ("tar of the " + name + " rootfs").c_str());
    docker_fs::rename(partial, tarball);
    return tarball;
}

inline docker_fs::path python_rootfs_tarball() { return rootfs_tarball("python-bookworm"); }

inline void ensure_python_image(kernex::docker_client& client) {
    if (image_present(client, python_image)) return;
    client.import_image(python_rootfs_tarball(), "kernex-test/python", "bookworm");
}

inline void ensure_ipykernel_image(kernex::docker_client& client) {
    if (image_present(client, ipykernel_image)) return;
    client.import_image(rootfs_tarball("ipykernel-bookworm", {"python3-ipykernel"}), "kernex-test/ipykernel",
                        "bookworm", std::chrono::minutes(10));
}

// ---- TLS: certificates made with the openssl CLI and a dockerd with
// --tlsverify on 127.0.0.1 and 127.0.0.2 (the same port; its certificate
// names 127.0.0.1 and localhost only).

// A CA and a server certificate for 127.0.0.1 and localhost, a client
// certificate it signed, a second CA with a client certificate of its own,
// and an expired client certificate (openssl ca takes explicit dates).
inline constexpr const char* make_tls_certificates = R"sh(set -e
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }
ca() {
  key "$1-key.pem"
  openssl req -x509 -new -key "$1-key.pem" -out "$1.pem" -days 2 -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
cert() {
  key "$1-key.pem"
  openssl req -new -key "$1-key.pem" -out "$1.csr" -subj "/CN=$1"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2-key.pem" -CAcreateserial -out "$1.pem" -days 2 \
    -extfile "$1.ext" 2>/dev/null
}
ca ca kernex-test-ca
ca other-ca kernex-test-other-ca
cert server ca "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
cert client ca "extendedKeyUsage=clientAuth"
cert stranger other-ca "extendedKeyUsage=clientAuth"
key expired-key.pem
openssl req -new -key expired-key.pem -out expired.csr -subj /CN=expired
: > index.txt
echo 01 > serial
printf '[ca]\ndefault_ca = kx\n[kx]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = pol\n[pol]\ncommonName = supplied\n' > ca.cnf
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca-key.pem -in expired.csr -out expired.pem \
  -startdate 20200101000000Z -enddate 20200102000000Z -notext 2>/dev/null
# The docker CLI's layout: DOCKER_CERT_PATH holds ca.pem, cert.pem, key.pem.
mkdir docker only-ca
cp ca.pem docker/ca.pem; cp client.pem docker/cert.pem; cp client-key.pem docker/key.pem
cp ca.pem only-ca/ca.pem
)sh";

inline docker_fs::path tls_certificates_in(const docker_fs::path& dir) {
    kernex::spawn_options spawn;
    spawn.argv = {"/bin/sh", "-c", make_tls_certificates};
    spawn.cwd = dir;
    kernex::run_options limits;
    limits.timeout = std::chrono::seconds(60);
    const auto r = kernex::run_process(spawn, limits);
    if (r.exit_code != 0) throw std::runtime_error("making the test certificates with openssl failed:\n" + r.output);
    return dir;
}

// A dockerd of its own speaking TLS on 127.0.0.1:port (and 127.0.0.2:port),
// its unix socket plain; its certificates (and the test's) in a temporary dir
// that goes with it.
struct tls_dockerd {
    temp_dir dir;
    docker_fs::path certs = tls_certificates_in(dir.path());
    unsigned short port = free_tcp_port();
    test_dockerd daemon{
        port,
        {"--host", "tcp://127.0.0.2:" + std::to_string(port), "--tlsverify", "--tlscacert",
         (certs / "ca.pem").string(), "--tlscert", (certs / "server.pem").string(), "--tlskey",
         (certs / "server-key.pem").string()}};
    std::string host = "tcp://127.0.0.1:" + std::to_string(port);

    kernex::docker_tls_options tls() const {
        return {.verify = {}, .ca = certs / "ca.pem", .cert = certs / "client.pem", .key = certs / "client-key.pem"};
    }
    kernex::docker_client client(std::chrono::milliseconds timeout = std::chrono::seconds(30)) const {
        return kernex::docker_client({.host = host, .tls = tls(), .timeout = timeout});
    }
};

// Whether something is mounted at path, per this process's mountinfo.
inline bool mounted_at(const docker_fs::path& path) {
    std::ifstream mountinfo("/proc/self/mountinfo");
    for (std::string line; std::getline(mountinfo, line);)
        if (line.find(" " + path.string() + " ") != std::string::npos) return true;
    return false;
}

// The mount point a container's work dir is bound from when kernex made it
// nosuid,nodev (src/docker/nosuid_bind.hpp), or empty: its Binds' source.
inline std::string work_dir_mount_point(kernex::docker_client& client, const std::string& container) {
    const auto inspect = client.call("GET", "/containers/" + container + "/json");
    for (const auto& bind : inspect["HostConfig"]["Binds"]) {
        const std::string source = bind.get<std::string>().substr(0, bind.get<std::string>().find(':'));
        if (docker_fs::path(source).filename().string().starts_with("kernex-mount-")) return source;
    }
    return {};
}

// What kill -9 of a kernex process left: found is false when its container
// never showed up (the output says why).
struct kill9_outcome {
    pid_t pid = -1;  // the CLI's
    bool found = false;
    std::string container;
    std::vector<docker_fs::path> dirs;  // the host dirs bound into the container
    // The mount points kernex binds a work dir from, nosuid,nodev (as root:
    // src/docker/nosuid_bind.hpp); Docker's bind names them, not the dir.
    std::vector<docker_fs::path> mount_points;
    bool container_left = true;
    std::vector<docker_fs::path> dirs_left;  // mount points left count too
    bool mount_left = false;  // one of mount_points still mounted
    std::string output;
};

// Runs the kernex CLI (argv) until `ready` appears in its output and its
// container (labelled with its pid) exists, kills it with SIGKILL, and
// returns what is left `within` after. The CLI is started with a plain
// posix_spawn, as a shell would: kernex::child_process's reaper would kill
// whatever the CLI leaves when it dies, kernex's own reaper included.
// With its_children, every child of the CLI (its container reaper above
// all) is SIGKILLed first, as an attacker or a kill of the whole tree would.
inline kill9_outcome kill9_mid_run(kernex::docker_client& client, const std::vector<std::string>& argv,
                                   const std::string& docker_host, const std::string& ready,
                                   std::chrono::milliseconds within, bool its_children = false) {
    kill9_outcome out;
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
    std::vector<std::string> env_strings = {"DOCKER_HOST=" + docker_host};
    for (char** e = environ; *e; ++e)
        if (!std::string_view(*e).starts_with("DOCKER_HOST=")) env_strings.emplace_back(*e);
    std::vector<char*> envp, args;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_copy = argv;
    for (auto& a : argv_copy) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = -1;
    const int spawned = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipe_fds[1]);
    struct reap {
        pid_t pid;
        int fd;
        ~reap() {
            if (pid > 0) {
                ::kill(pid, SIGKILL);
                int status = 0;
                ::waitpid(pid, &status, 0);
            }
            ::close(fd);
        }
    } cleanup{spawned == 0 ? pid : -1, pipe_fds[0]};
    if (spawned != 0) throw std::runtime_error("cannot spawn " + argv[0]);
    out.pid = pid;
    ::fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
    nlohmann::json list;
    const nlohmann::json filters = {{"label", {"org.kernex.owner.pid=" + std::to_string(pid)}}};
    while (std::chrono::steady_clock::now() < deadline) {
        char buffer[4096];
        ssize_t n;
        while ((n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0) out.output.append(buffer, n);
        if (out.output.find(ready) != std::string::npos) {
            list = client.call("GET", "/containers/json?filters=" + filters.dump());
            if (list.size() == 1) break;
        }
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            cleanup.pid = -1;
            return out;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (list.size() != 1) return out;
    out.found = true;
    out.container = list[0]["Id"].get<std::string>();
    const auto inspect = client.call("GET", "/containers/" + out.container + "/json");
    const std::string point = work_dir_mount_point(client, out.container);
    if (!point.empty()) out.mount_points.push_back(point);
    for (const auto& bind : inspect["HostConfig"]["Binds"]) {
        const std::string source = bind.get<std::string>().substr(0, bind.get<std::string>().find(':'));
        if (source != point) out.dirs.push_back(source);
    }
    // Temporary dirs that are not bound (files: copy): named in a label.
    const auto labelled = nlohmann::json::parse(
        inspect["Config"]["Labels"].value("org.kernex.temp_dirs", std::string("[]")), nullptr, false);
    if (labelled.is_array())
        for (const auto& d : labelled)
            if (d.is_string() && std::find(out.dirs.begin(), out.dirs.end(), d.get<std::string>()) == out.dirs.end())
                out.dirs.push_back(d.get<std::string>());
    if (its_children) {
        ::kill(pid, SIGSTOP);  // no new child meanwhile
        std::error_code ec;
        for (const auto& task : docker_fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
            std::ifstream children(task.path() / "children");
            for (pid_t child; children >> child;) ::kill(child, SIGKILL);
        }
    }
    ::kill(pid, SIGKILL);
    const auto until = std::chrono::steady_clock::now() + within;
    for (;;) {
        out.container_left = client.request("GET", "/containers/" + out.container + "/json").status != 404;
        out.dirs_left.clear();
        for (const auto& d : out.dirs)
            if (docker_fs::exists(d)) out.dirs_left.push_back(d);
        for (const auto& d : out.mount_points)
            if (docker_fs::exists(d)) out.dirs_left.push_back(d);
        out.mount_left = std::any_of(out.mount_points.begin(), out.mount_points.end(), mounted_at);
        if ((!out.container_left && out.dirs_left.empty() && !out.mount_left) ||
            std::chrono::steady_clock::now() >= until)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return out;
}

// The benchmarks' arguments: positive numbers, and --host URL --image IMAGE.
struct bench_args {
    std::string host;
    std::string image;
    std::vector<int> numbers;
    bool ok = true;  // false: an argument that is none of these
};

inline bench_args parse_bench_args(int argc, char** argv, std::string default_image) {
    bench_args out{{}, std::move(default_image), {}};
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--host" && i + 1 < argc)
            out.host = argv[++i];
        else if (arg == "--image" && i + 1 < argc)
            out.image = argv[++i];
        else if (std::atoi(argv[i]) > 0)
            out.numbers.push_back(std::atoi(argv[i]));
        else
            out.ok = false;
    }
    return out;
}

// For the benchmarks: a dockerd of their own with the image ensure makes,
// unless host already names a daemon (then null). Sets host to its address.
inline std::unique_ptr<test_dockerd> bench_daemon(std::string& host, void (*ensure)(kernex::docker_client&)) {
    if (!host.empty()) return nullptr;
    auto daemon = std::make_unique<test_dockerd>();
    host = daemon->host();
    auto client = daemon->client();
    ensure(client);
    return daemon;
}

}  // namespace kernex::test
