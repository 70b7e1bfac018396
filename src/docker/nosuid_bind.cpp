#include "docker/nosuid_bind.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "docker/reaper.hpp"
#include "kernex/docker_client.hpp"
#include "kernex/error.hpp"

namespace fs = std::filesystem;

namespace kernex::docker {

namespace {

// The pid of the process listening on the daemon's unix socket, or -1
// (another pid namespace says 0).
pid_t daemon_pid(const std::string& host) {
    if (!host.starts_with("unix://")) return -1;
    const std::string path = host.substr(7);
    sockaddr_un address{};
    if (path.empty() || path.size() >= sizeof address.sun_path) return -1;
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    pid_t pid = -1;
    ucred peer{};
    socklen_t length = sizeof peer;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0 &&
        ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) == 0 && peer.pid > 0)
        pid = peer.pid;
    ::close(fd);
    return pid;
}

bool same_mount_namespace(pid_t pid) {
    struct stat ours {}, theirs {};
    const std::string path = "/proc/" + std::to_string(pid) + "/ns/mnt";
    return ::stat("/proc/self/ns/mnt", &ours) == 0 && ::stat(path.c_str(), &theirs) == 0 &&
           ours.st_dev == theirs.st_dev && ours.st_ino == theirs.st_ino;
}

// Binds dir_fd's dir (with what is mounted below it) at point, private (no
// mount event travels to or from it), then remounts it nosuid,nodev with
// the other flags of the mount it copies (a read-only or noexec source stays
// so). Empty when done, else why not (and nothing is left mounted).
std::string mount_nosuid(int dir_fd, const fs::path& point) {
    const std::string source = "/proc/self/fd/" + std::to_string(dir_fd);  // that dir, wherever it is now
    if (::mount(source.c_str(), point.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
        return std::string("cannot bind it at a mount point of kernex's: ") + std::strerror(errno);
    struct statvfs st {};
    unsigned long kept = 0;
    const bool flags_read = ::statvfs(point.c_str(), &st) == 0;
    if (flags_read) {
        if (st.f_flag & ST_RDONLY) kept |= MS_RDONLY;
        if (st.f_flag & ST_NOEXEC) kept |= MS_NOEXEC;
        if (st.f_flag & ST_NOATIME) kept |= MS_NOATIME;
        if (st.f_flag & ST_NODIRATIME) kept |= MS_NODIRATIME;
        if (st.f_flag & ST_RELATIME) kept |= MS_RELATIME;
    }
    std::string failed;
    if (!flags_read) failed = std::string("cannot read its mount flags: ") + std::strerror(errno);
    else if (::mount(nullptr, point.c_str(), nullptr, MS_PRIVATE | MS_REC, nullptr) != 0)
        failed = std::string("cannot make its bind private: ") + std::strerror(errno);
    else if (::mount(nullptr, point.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | kept, nullptr) != 0)
        failed = std::string("cannot remount its bind nosuid,nodev: ") + std::strerror(errno);
    if (!failed.empty()) ::umount2(point.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
    return failed;
}

}  // namespace

void remove_mount_point(const char* path) noexcept {
    ::umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
    ::rmdir(path);
}

nosuid_bind::nosuid_bind(const docker_client& client, fs::path dir, reaper* r)
    : m_dir(std::move(dir)), m_reaper(r) {
    const std::string host = client.host().empty() ? default_docker_host() : client.host();
    const pid_t daemon = daemon_pid(host);
    if (daemon < 0) {
        m_note = host.starts_with("unix://") ? "the daemon's pid cannot be known (another pid namespace?)"
                                             : "the daemon is not on this host's unix socket";
        return;
    }
    if (!same_mount_namespace(daemon)) {
        m_note = "the daemon is in another mount namespace";
        return;
    }
    m_dir_fd = ::open(m_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (m_dir_fd < 0) {
        m_note = std::string("the work dir cannot be opened: ") + std::strerror(errno);
        return;
    }
    std::string pattern = (fs::temp_directory_path() / "kernex-mount-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) {
        m_note = std::string("no mount point can be made in TMPDIR: ") + std::strerror(errno);
        return;
    }
    // Tried now, so that a start does not find out (a user without
    // CAP_SYS_ADMIN gets EPERM here).
    if (std::string why = mount_nosuid(m_dir_fd, pattern); !why.empty()) {
        ::rmdir(pattern.c_str());
        m_note = why;
        return;
    }
    ::umount2(pattern.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
    m_point = pattern;
    if (m_reaper) m_reaper->track_mount(m_point.string());
}

nosuid_bind::~nosuid_bind() {
    if (!m_point.empty()) {
        remove_mount_point(m_point.c_str());  // unmounted by now (each guard unmounts)
        if (m_reaper) m_reaper->forget_mount(m_point.string());
    }
    if (m_dir_fd >= 0) ::close(m_dir_fd);
}

nosuid_bind::mounted nosuid_bind::for_start() const {
    if (m_point.empty()) return mounted({});
    if (std::string why = mount_nosuid(m_dir_fd, m_point); !why.empty())
        throw error(errc::io_error, "the work dir " + m_dir.string() + " cannot be mounted nosuid,nodev for the container's start (" +
                                        why + "), though it could when the container was made");
    return mounted(m_point);
}

nosuid_bind::mounted::~mounted() {
    // The container has its own copy by now (or did not start).
    if (!m_point.empty()) ::umount2(m_point.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
}

}  // namespace kernex::docker
