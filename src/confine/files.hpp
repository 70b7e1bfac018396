// confine/files: the one way kernex creates a file in a directory that code
// can write (a work dir, an output dir). Code there is an attacker who can
// plant symlinks, hard links, FIFOs and device nodes at the names kernex is
// about to use, and swap a directory for a symlink while kernex walks it.
// So every file is created beneath a directory fd: each path component is
// opened relative to the one before with O_NOFOLLOW (a symlink anywhere on
// the way is refused, never followed), ".." and absolute names are refused,
// and the file itself is made with O_CREAT | O_EXCL, so it is always a new
// inode that nothing else links to and nothing existing is ever written
// through. Internal to the library.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "confine/unique_fd.hpp"

namespace kernex::confine {

using kernex::unique_fd;

// What to do when something already stands at the name.
enum class if_exists {
    fresh_name,  // use "stem-2.ext", "stem-3.ext", ...: never touch what is there
    replace,     // unlink what is there (whatever it is, but a directory) and create anew
};

struct create_options {
    mode_t mode = 0600;           // of the file (the umask applies)
    bool make_parents = true;     // create missing dirs on the way, mode 0700
    if_exists existing = if_exists::fresh_name;
};

struct created_file {
    unique_fd fd;      // open for writing, close-on-exec
    std::string name;  // the name used, relative to the dir ("d/x-2.py")
};

// Opens dir (a path the user gave: symlinks in it are followed, as they are
// the user's) as a directory fd for create_beneath. Throws
// kernex::error(io_error) when it is missing or not a directory.
unique_fd open_dir(const std::filesystem::path& dir);

// Creates a new regular file at name (relative, '/'-separated) beneath
// dir_fd, as the header says. Returns its fd and the name used. Throws
// kernex::error: invalid_argument when name is empty, absolute, has a ".."
// component, or a symlink or non-directory stands where a directory of it
// should be ("... is not inside the dir"); io_error when the file cannot be
// created (a name too long for the file system says so), or when replace
// cannot make the name free because something keeps putting it back.
created_file create_beneath(int dir_fd, std::string_view name, const create_options& options = {});

// create_beneath, then writes bytes to the file. Returns the name used.
// Throws as create_beneath, and io_error when the write fails.
std::string write_beneath(int dir_fd, std::string_view name, std::string_view bytes,
                          const create_options& options = {});

// name with "-N" put before its extension: ("plot.png", 2) -> "plot-2.png",
// ("d/Makefile", 3) -> "d/Makefile-3", (".env", 2) -> ".env-2".
std::string numbered_name(std::string_view name, unsigned n);

}  // namespace kernex::confine
