// The reaper: the process between kernex and every program it spawns. A
// forked child that leads its own session, makes itself a child subreaper
// (every orphan of the program's tree is reparented to it, whatever it does:
// setsid, double forks, nohup, job control), then starts the program (a
// clone that shares its memory until the exec, as vfork). When the program
// ends, when kernex asks (a byte on the lifeline) or when kernex dies (end
// of file on the lifeline, whose write end only kernex holds), it SIGKILLs
// all its descendants until none is left, removes the files (and the
// directory tree) it was told about if kernex died, and exits with the
// program's status. With reaper_plan::linger it says the program's status
// on the lifeline once no descendant is left and stays, nothing under it,
// as the holder of that tree (a temporary work dir between blocks) until
// kernex says 'l' (go, leave the tree) or dies (remove it, then go). Made by
// a clone with CLONE_NEWPID when spawn_options::own_pid_namespace asks (and
// kernex may), it is pid 1 of the program's pid namespace instead: nothing
// there can signal it, its kill is kill(-1), and its end is the end of
// every process in it. Internal to the process module.
//
// The forked child of a multithreaded program may only make async-signal-
// safe calls: everything the reaper needs is prepared in a reaper_plan
// before fork(), and run_reaper() allocates nothing.
#pragma once

#include <sys/resource.h>

#include <cstddef>

namespace kernex::detail {

struct reaper_limit {
    int resource = 0;
    rlim_t value = 0;
};

struct reaper_plan {
    const char* file = nullptr;            // what to exec
    char* const* argv = nullptr;
    char* const* envp = nullptr;
    const char* cwd = nullptr;             // nullptr: stay
    int stdin_fd = -1;                     // /dev/null
    int stdout_fd = -1;                    // the write ends (or files) for the program
    int stderr_fd = -1;
    int lifeline_fd = -1;                  // read end; kernex holds the write end
    int report_fd = -1;                    // write end: the program's pid, then errno if exec fails
    const char* const* remove_if_orphaned = nullptr;  // null-terminated
    const char* remove_tree_if_orphaned = nullptr;    // a directory and all in it
    // Once the program's tree is gone and its status said: stay, holding
    // what is removed if orphaned, until kernex says leave ('l') or dies.
    bool linger = false;
    const reaper_limit* limits = nullptr;  // applied to the program before exec
    std::size_t limit_count = 0;
    int max_fd = 1024;                     // for closing fds where close_range is missing
};

// Runs in the child of fork(): never returns.
[[noreturn]] void run_reaper(const reaper_plan& plan) noexcept;

}  // namespace kernex::detail
