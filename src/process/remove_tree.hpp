// remove_tree: removes a directory and everything in it without following a
// symlink or leaving its file system, allocating nothing, so that it can run
// in the forked reaper (src/process/reaper.cpp) as well as in kernex-keeper
// (src/process/keeper_main.cpp), both after kernex died. Internal to the
// process module.
#pragma once

#include <sys/types.h>

namespace kernex::detail {

// Whether name (relative to at, not followed) is the root of a mount: a
// bind mount of a dir on the same file system included (statx's
// STATX_ATTR_MOUNT_ROOT; false on kernels before 5.8, which do not say).
bool is_mount_root(int at, const char* name) noexcept;

// Opens the directory name (relative to at; AT_FDCWD for a path) to empty it,
// never through a symlink, never into a mount below at (is_mount_root), and
// only on file system *dev when dev is given.
// One the code made unreadable or read-only (chmod 000, chmod 500) gets its
// owner's rights back first: nothing of the code runs by then. -1 when it
// cannot be had.
int open_emptiable_dir(int at, const char* name, const dev_t* dev) noexcept;

// Removes path (a directory, not followed if it is a symlink) and its
// contents, dirs the code made unreadable or read-only included, best
// effort: what cannot be removed stays, silently.
void remove_tree(const char* path) noexcept;

}  // namespace kernex::detail
