// dir_keeper: while one lives, a kill -9 of kernex still removes a
// directory tree (the local executor's temporary work dir between blocks,
// when no block's reaper holds it). It runs kernex-keeper
// (src/process/keeper_main.cpp), found as helper_program() finds helpers,
// by posix_spawn: no copy of kernex's address space, a fraction of the
// cost of the fork of kernex and exec of `sleep infinity` that
// keeper_spawn_options() makes, which is what it falls back on when the
// helper is not installed. Internal to the process module.
#pragma once

#include <filesystem>
#include <memory>

namespace kernex {
class child_process;
}

namespace kernex::detail {

class dir_keeper {
public:
    // Starts the keeper of dir. Throws kernex::error when neither the
    // helper nor the fallback can be started.
    explicit dir_keeper(const std::filesystem::path& dir);
    // Tells the keeper to leave dir alone and reaps it.
    ~dir_keeper();
    dir_keeper(const dir_keeper&) = delete;
    dir_keeper& operator=(const dir_keeper&) = delete;

private:
    int m_pid = -1;
    int m_pidfd = -1;
    int m_lifeline = -1;                      // our end; the keeper's stdin is the other
    std::unique_ptr<child_process> m_forked;  // the fallback
};

}  // namespace kernex::detail
