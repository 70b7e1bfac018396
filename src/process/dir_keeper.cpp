#include "process/dir_keeper.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "kernex/process.hpp"
#include "process/helper_program.hpp"
#include "process/process_internal.hpp"

namespace kernex::detail {

namespace {

// Spawns kernex-keeper for dir with life (then its stdin) as the lifeline;
// its pid, or -1 when the helper is missing or could not be spawned.
pid_t spawn_keeper(const std::filesystem::path& helper, const std::filesystem::path& dir, int life) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    if (posix_spawn_file_actions_init(&actions) != 0) return -1;
    if (posix_spawnattr_init(&attr) != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return -1;
    }
    posix_spawn_file_actions_adddup2(&actions, life, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    // None of kernex's other fds (other reapers' lifelines above all, whose
    // end of file must not wait for the keeper).
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    posix_spawn_file_actions_addchdir_np(&actions, "/");
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    const std::string program = helper.string();
    const std::string dir_name = dir.string();
    char* argv[] = {const_cast<char*>(program.c_str()), const_cast<char*>(dir_name.c_str()), nullptr};
    char* envp[] = {nullptr};
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, program.c_str(), &actions, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return rc == 0 ? pid : -1;
}

}  // namespace

dir_keeper::dir_keeper(const std::filesystem::path& dir) {
    const std::filesystem::path absolute = std::filesystem::absolute(dir);
    if (const auto helper = helper_program("kernex-keeper"); !helper.empty()) {
        // A socket, so that a byte sent after the keeper is gone gives EPIPE, not SIGPIPE.
        int life[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, life) == 0) {
            m_pid = spawn_keeper(helper, absolute, life[0]);
            ::close(life[0]);
            if (m_pid > 0) {
                m_lifeline = life[1];
                m_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, m_pid, 0));
                return;
            }
            ::close(life[1]);
        }
    }
    spawn_options keeper = keeper_spawn_options();
    keeper.remove_tree_if_orphaned = absolute;
    m_forked = std::make_unique<child_process>(keeper);
}

dir_keeper::~dir_keeper() {
    if (m_forked) m_forked->stop(std::chrono::milliseconds(0));
    if (m_pid <= 0) return;
    [[maybe_unused]] auto sent = ::send(m_lifeline, "k", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(m_lifeline);
    // It exits at once on the byte; the bound is for a keeper stopped
    // (SIGSTOP) by someone else, which we would rather kill than hang on.
    if (!wait_exit_until(m_pid, m_pidfd, clock::now() + std::chrono::seconds(10))) ::kill(m_pid, SIGKILL);
    int status = 0;
    while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {}
    if (m_pidfd >= 0) ::close(m_pidfd);
}

}  // namespace kernex::detail
