#include "confine/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "kernex/error.hpp"

namespace kernex::confine {

namespace {

// Enough for any honest collision; an attacker filling names (or racing to
// put a name back) gets an error instead of an endless loop.
constexpr unsigned max_attempts = 1000;

std::string why(int err) {
    if (err == ENAMETOOLONG) return "the name is too long for the file system";
    return std::strerror(err);
}

std::vector<std::string_view> components(std::string_view name) {
    std::vector<std::string_view> parts;
    while (!name.empty()) {
        const auto slash = name.find('/');
        const std::string_view part = name.substr(0, slash);
        if (!part.empty() && part != ".") parts.push_back(part);
        if (slash == std::string_view::npos) break;
        name.remove_prefix(slash + 1);
    }
    return parts;
}

[[noreturn]] void outside(std::string_view name, std::string_view reason) {
    throw error(errc::invalid_argument,
                std::string(name) + " is not inside the dir (" + std::string(reason) + "); name a file beneath it");
}

// The dir fd of component parts[0..n) beneath dir_fd, made when missing.
unique_fd open_parents(int dir_fd, std::string_view name, const std::vector<std::string_view>& parts,
                       bool make_parents) {
    unique_fd current(::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0));
    if (!current) throw error(errc::io_error, std::string("cannot duplicate a dir fd: ") + std::strerror(errno));
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        const std::string part(parts[i]);
        for (int attempt = 0;; ++attempt) {
            const int fd = ::openat(current.get(), part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd >= 0) {
                current = unique_fd(fd);
                break;
            }
            const int err = errno;
            if (err == ENOENT && make_parents && attempt < 3) {
                if (::mkdirat(current.get(), part.c_str(), 0700) != 0 && errno != EEXIST)
                    throw error(errc::io_error,
                                "cannot create the dir " + part + " for " + std::string(name) + ": " + why(errno));
                continue;
            }
            if (err == ENOTDIR || err == ELOOP) outside(name, part + " is a symlink or not a directory");
            throw error(errc::io_error, "cannot open the dir " + part + " for " + std::string(name) + ": " + why(err));
        }
    }
    return current;
}

}  // namespace

unique_fd open_dir(const std::filesystem::path& dir) {
    const int fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        throw error(errc::io_error, "cannot open the dir " + dir.string() + ": " +
                                        (err == ENOTDIR ? std::string("not a directory") : why(err)));
    }
    return unique_fd(fd);
}

std::string numbered_name(std::string_view name, unsigned n) {
    const auto slash = name.rfind('/');
    const std::size_t leaf = slash == std::string_view::npos ? 0 : slash + 1;
    auto dot = name.rfind('.');
    if (dot == std::string_view::npos || dot <= leaf) dot = name.size();  // no extension, or a dot file
    return std::string(name.substr(0, dot)) + "-" + std::to_string(n) + std::string(name.substr(dot));
}

created_file create_beneath(int dir_fd, std::string_view name, const create_options& options) {
    if (name.empty()) throw error(errc::invalid_argument, "an empty file name");
    if (name.front() == '/') outside(name, "an absolute name");
    const auto parts = components(name);
    if (parts.empty()) outside(name, "no file name");
    for (const auto part : parts)
        if (part == "..") outside(name, "'..'");

    const unique_fd parent = open_parents(dir_fd, name, parts, options.make_parents);
    std::string dir_part;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) dir_part.append(parts[i]).append("/");
    const std::string leaf(parts.back());

    for (unsigned attempt = 1; attempt <= max_attempts; ++attempt) {
        const bool numbered = options.existing == if_exists::fresh_name && attempt > 1;
        const std::string candidate = numbered ? numbered_name(leaf, attempt) : leaf;
        // O_EXCL: what stands at the name (a symlink, a FIFO, a device, a
        // hard link to a file elsewhere) is never opened, let alone written.
        const int fd = ::openat(parent.get(), candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                options.mode);
        if (fd >= 0) return {unique_fd(fd), dir_part + candidate};
        const int err = errno;
        if (err != EEXIST)
            throw error(errc::io_error, "cannot create " + dir_part + candidate + ": " + why(err));
        if (options.existing == if_exists::fresh_name) continue;
        struct stat st {};
        if (::fstatat(parent.get(), candidate.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
            throw error(errc::io_error, "cannot create " + dir_part + candidate + ": a directory stands there");
        if (::unlinkat(parent.get(), candidate.c_str(), 0) != 0 && errno != ENOENT)
            throw error(errc::io_error, "cannot replace " + dir_part + candidate + ": " + why(errno));
    }
    throw error(errc::io_error, "cannot create " + std::string(name) + ": " +
                                    (options.existing == if_exists::fresh_name
                                         ? "every numbered name up to -" + std::to_string(max_attempts) + " is taken"
                                         : std::string("something keeps putting it back")));
}

std::string write_beneath(int dir_fd, std::string_view name, std::string_view bytes, const create_options& options) {
    created_file file = create_beneath(dir_fd, name, options);
    for (std::size_t done = 0; done < bytes.size();) {
        const ssize_t n = ::write(file.fd.get(), bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw error(errc::io_error, "cannot write " + file.name + ": " + why(errno));
        done += static_cast<std::size_t>(n);
    }
    return file.name;
}

}  // namespace kernex::confine
