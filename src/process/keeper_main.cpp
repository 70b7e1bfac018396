// kernex-keeper DIR: removes the directory tree DIR if kernex dies. kernex
// starts it with posix_spawn (src/process/dir_keeper.cpp) for a temporary
// work dir that must not outlive a kill -9 between blocks, when no block's
// reaper is there to remove it. Its stdin is the lifeline: a byte means
// kernex is done with it (the dir is kernex's to remove, or stays); end of
// file means kernex is gone, and the tree goes. A static program with no
// dependency but libc: starting it costs a fraction of forking kernex.
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "process/remove_tree.hpp"

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    // Its own session already (kernex's terminal and process group cannot
    // reach it); ignoring the rest means only SIGKILL ends it early.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &ignore, nullptr);
    char c;
    ssize_t got;
    while ((got = ::read(0, &c, 1)) < 0 && errno == EINTR) {}
    if (got == 1) return 0;
    kernex::detail::remove_tree(argv[1]);
    return 0;
}
