// nosuid_bind: the work dir as a container's /workspace, mounted nosuid and
// nodev where kernex can make it so.
//
// Docker cannot set these flags on a bind (moby#12143), but a bind copies
// the flags of the mount it binds. So kernex, when it may mount (root, or
// CAP_SYS_ADMIN) and shares the daemon's mount namespace (a local daemon on
// a unix socket, whose pid SO_PEERCRED names), binds the dir at a private
// mount point of its own (TMPDIR/kernex-mount-XXXXXX, 0700), remounts that
// nosuid,nodev (keeping the source's read-only and noexec), and gives the
// mount point to Docker instead of the dir. The mount is there only while
// Docker starts the container, which keeps a copy of it in its own mount
// namespace; it is made again for each start (a kernel's restart).
// Elsewhere (a user without the privilege, a remote daemon, a daemon in
// another mount namespace) the dir itself is bound and note() says why.
//
// The mount point is only ever unmounted and rmdir-ed, never emptied: what
// it shows while mounted is the work dir. Internal to the docker module.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace kernex {
class docker_client;
}

namespace kernex::docker {

class reaper;

// A mount point of nosuid_bind's, at kernex's death or end: unmounted
// (detached, should a start have been cut short) and rmdir-ed, never
// emptied: while mounted it shows the work dir. Async-signal-safe (the
// container reaper's child calls it).
void remove_mount_point(const char* path) noexcept;

class nosuid_bind {
public:
    // Tries, once, whether dir can be bound nosuid,nodev for client's daemon.
    // r (may be null): told of the mount point, so that a kill -9 of kernex
    // leaves no mount and no dir (the container's owner_labels should name
    // it too, for the next start's sweep should the reaper die as well).
    // Never throws for a dir it cannot mount: source() is then dir.
    nosuid_bind(const docker_client& client, std::filesystem::path dir, reaper* r);
    // Unmounts (should a start have been cut short) and removes the mount point.
    ~nosuid_bind();
    nosuid_bind(const nosuid_bind&) = delete;
    nosuid_bind& operator=(const nosuid_bind&) = delete;

    // What the container's bind names: the mount point, or the dir.
    std::string source() const { return (m_point.empty() ? m_dir : m_point).string(); }
    bool applied() const noexcept { return !m_point.empty(); }
    // The mount point, for the container's owner_labels (none when !applied()).
    std::vector<std::string> mount_points() const { return applied() ? std::vector{source()} : std::vector<std::string>{}; }
    // Why the work dir is bound without nosuid,nodev (empty when it is not).
    const std::string& note() const noexcept { return m_note; }

    // The mount, for one start of the container: made now, unmounted when
    // the returned guard goes. Throws kernex::error(io_error) when it cannot
    // be made though it could at construction: the container would see an
    // empty dir. A no-op when !applied().
    class mounted {
    public:
        explicit mounted(std::filesystem::path point) : m_point(std::move(point)) {}
        mounted(mounted&& other) noexcept : m_point(std::exchange(other.m_point, {})) {}
        ~mounted();
        mounted(const mounted&) = delete;
        mounted& operator=(const mounted&) = delete;
        mounted& operator=(mounted&&) = delete;

    private:
        std::filesystem::path m_point;
    };
    [[nodiscard]] mounted for_start() const;

private:
    std::filesystem::path m_dir;
    std::filesystem::path m_point;
    int m_dir_fd = -1;  // O_PATH: what is bound is this dir, even if renamed meanwhile
    std::string m_note;
    reaper* m_reaper = nullptr;
};

}  // namespace kernex::docker
