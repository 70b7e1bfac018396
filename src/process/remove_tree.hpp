// remove_tree: removes a directory and everything in it without following a
// symlink or leaving its file system, allocating nothing, so that it can run
// in the forked reaper (src/process/reaper.cpp) as well as in kernex-keeper
// (src/process/keeper_main.cpp), both after kernex died. Internal to the
// process module.
#pragma once

namespace kernex::detail {

// Removes path (a directory, not followed if it is a symlink) and its
// contents, best effort: what cannot be removed stays, silently.
void remove_tree(const char* path) noexcept;

}  // namespace kernex::detail
