#include "process/remove_tree.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace kernex::detail {

namespace {

// Removes everything inside the directory dir_fd (then closed) on the file
// system dev: each entry unlinked relative to its dir's fd, a directory
// entered with O_NOFOLLOW (a symlink is unlinked, never followed) and only
// on the same file system. No allocation: entries are read with getdents64
// into a buffer on the stack, subdirectories by recursion, bounded by depth.
// The program's tree is dead by now, so nothing writes meanwhile; a pass
// that removed something is followed by another (deleting while reading a
// directory may skip entries).
void empty_dir(int dir_fd, dev_t dev, int depth) noexcept {
    struct linux_dirent64 {
        std::uint64_t d_ino;
        std::int64_t d_off;
        unsigned short d_reclen;
        unsigned char d_type;
        char d_name[];
    };
    alignas(8) char buf[2048];
    for (int pass = 0; pass < 16; ++pass) {
        bool removed = false;
        ::lseek(dir_fd, 0, SEEK_SET);
        for (;;) {
            const long n = ::syscall(SYS_getdents64, dir_fd, buf, sizeof buf);
            if (n <= 0) break;
            for (long at = 0; at < n;) {
                const auto* e = reinterpret_cast<const linux_dirent64*>(buf + at);
                at += e->d_reclen;
                const char* name = e->d_name;
                if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
                if (::unlinkat(dir_fd, name, 0) == 0) {
                    removed = true;
                    continue;
                }
                if (errno != EISDIR || depth >= 64) continue;
                const int sub = open_emptiable_dir(dir_fd, name, &dev);
                if (sub < 0) continue;
                empty_dir(sub, dev, depth + 1);
                if (::unlinkat(dir_fd, name, AT_REMOVEDIR) == 0) removed = true;
            }
        }
        if (!removed) break;
    }
    ::close(dir_fd);
}

}  // namespace

bool is_mount_root(int at, const char* name) noexcept {
    struct statx stx;
    if (::statx(at, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, 0, &stx) != 0) return false;
    return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

int open_emptiable_dir(int at, const char* name, const dev_t* dev) noexcept {
    constexpr int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    // A mount inside the tree (a bind of a dir elsewhere, on the same file
    // system or not) is never entered, nor chmod-ed: what it shows is not
    // the tree's.
    if (at != AT_FDCWD && is_mount_root(at, name)) return -1;
    int fd = ::openat(at, name, flags);
    if (fd < 0 && errno == EACCES) {
        // Made unreadable by the code (chmod 000): its owner's rights back,
        // by name, once it is known to be a directory here (not a link).
        struct stat st;
        if (::fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
            (!dev || st.st_dev == *dev) && ::fchmodat(at, name, 0700, 0) == 0)
            fd = ::openat(at, name, flags);
    }
    if (fd < 0) return -1;
    struct stat st;
    if (::fstat(fd, &st) != 0 || (dev && st.st_dev != *dev)) {
        ::close(fd);
        return -1;
    }
    // Made read-only (chmod 500): its entries could not be unlinked. A dir
    // that has its owner's rights already is not written (an inode update).
    if ((st.st_mode & 0700) != 0700) ::fchmod(fd, 0700);
    return fd;
}

void remove_tree(const char* path) noexcept {
    const int fd = open_emptiable_dir(AT_FDCWD, path, nullptr);
    if (fd < 0) return;
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        return;
    }
    empty_dir(fd, st.st_dev, 0);
    ::rmdir(path);
}

}  // namespace kernex::detail
