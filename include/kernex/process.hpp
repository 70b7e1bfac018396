// Child processes: spawning (own session and process group, every fd but
// stdio closed, chosen environment and directory), reading their output
// against one deadline with a byte cap, and stopping them (signal to the
// whole group, wait, SIGKILL, reap). Every child is reaped; a child_process
// destructor leaves no process behind.
//
// Every program runs under a reaper of its own: a small process of kernex's
// that leads the program's session and is its child subreaper, so whatever
// the program starts (job control, setsid, double forks, nohup) stays its
// descendant. When the program ends, when stop() asks, or when kernex dies
// (kill -9 included), the reaper SIGKILLs every descendant, then exits with
// the program's status. Code running as the same user can kill a plain
// reaper; with own_pid_namespace (and the privilege to make one) the reaper
// is the init of a pid namespace of the program's own, which nothing in it
// can kill and whose end takes every process in it. Without the privilege,
// the sandbox (bubblewrap's pid namespace) is the confinement that holds.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kernex {

using clock = std::chrono::steady_clock;

// Where a child's stdout/stderr go.
enum class output_mode {
    inherit,  // the parent's
    null,     // /dev/null
    pipe,     // a pipe the parent reads (stderr: a second pipe, see merge_stderr)
    file,     // appended to spawn_options::log_file
};

// stdin is /dev/null (nothing kernex runs reads from a terminal), or a pipe
// kernex writes (stdin_pipe: a resident runner's requests).
struct spawn_options {
    std::vector<std::string> argv;                   // argv[0] is searched on the child's PATH when it has no '/'
    std::optional<std::filesystem::path> cwd;
    bool inherit_environment = true;                 // start from the parent's environment
    std::map<std::string, std::string> env;          // set (or override) these
    bool stdin_pipe = false;                         // a pipe whose write end is child_process::stdin_fd()
    output_mode stdout_mode = output_mode::pipe;
    output_mode stderr_mode = output_mode::pipe;
    bool merge_stderr = true;                        // with pipe: stderr into the stdout pipe, in arrival order
    std::filesystem::path log_file;                  // with output_mode::file
    // Removed by the reaper if kernex dies while the program runs (its
    // connection file and log, say; an empty directory is removed too, so
    // list it after its files); left alone on a normal end.
    std::vector<std::filesystem::path> remove_if_orphaned;
    // A directory removed with everything in it if kernex dies while the
    // program runs (a temporary work dir), after the program's tree is
    // killed: no symlink followed, no other file system entered.
    std::filesystem::path remove_tree_if_orphaned;
    // Resource limits set on the program before exec (soft = hard): {RLIMIT_NPROC, 64}, ...
    std::vector<std::pair<int, std::uint64_t>> rlimits;
    // The reaper becomes pid 1 of a new pid namespace and the program its
    // child: no process of the program's tree can signal the reaper (init
    // of its namespace) or see any process outside it by pid, and when the
    // reaper ends the kernel kills whatever is left in the namespace. Needs
    // CAP_SYS_ADMIN (root); without it the reaper is a plain child
    // subreaper, as it is for every program (child_process::own_pid_namespace()
    // says which). pid() is the program's pid as kernex sees it.
    bool own_pid_namespace = false;
    // With remove_tree_if_orphaned: once the program and every process it
    // started are gone, the reaper stays (idle, nothing under it) as the
    // holder of that tree, so a kill -9 of kernex still removes it, until
    // stop() tells it to go (leaving the tree alone). status() is known as
    // soon as the program's tree is gone (ended_fd() turns readable). A
    // temporary work dir is held between blocks this way, by the last
    // block's reaper, without a process of its own.
    bool linger = false;
};

// A running (or exited, not yet reaped) program under its reaper, which
// leads the program's session and process group. An exited reaper stays a
// zombie until stop() (or the destructor) reaps it: so long as it is unreaped
// its pid, and so the group id, cannot be reused, and signal_group() and
// stop() can only reach its own group. Move-only.
class child_process {
public:
    // Spawns the child. Throws kernex::error(launch_failed) naming argv[0] when
    // it cannot be executed (not found, not executable), with errno's text.
    explicit child_process(const spawn_options& options);
    child_process() = default;
    ~child_process();  // stop(): no process and no zombie left
    child_process(child_process&& other) noexcept;
    child_process& operator=(child_process&& other) noexcept;

    // The program's pid (its reaper's is the group id).
    int pid() const noexcept { return m_pid; }
    // True when the program runs in a pid namespace of its own (asked with
    // spawn_options::own_pid_namespace, and kernex could make one).
    bool own_pid_namespace() const noexcept { return m_own_namespace; }
    // A pidfd: becomes readable once the program has exited and its reaper
    // has killed everything it left and exited (a lingering one: once it
    // has gone; see ended_fd()). -1 if none.
    int pidfd() const noexcept { return m_pidfd; }
    // Becomes readable once the program has exited and everything it left
    // is killed: pidfd(), or with spawn_options::linger (whose reaper does
    // not exit then) the reaper's lifeline, where it says the status. Then
    // wait_until() returns the status at once. -1 if none.
    int ended_fd() const noexcept { return m_linger ? m_lifeline : m_pidfd; }
    // The read end of the stdout pipe (with pipe mode), -1 otherwise. Non-blocking.
    int stdout_fd() const noexcept { return m_stdout; }
    int stderr_fd() const noexcept { return m_stderr; }
    // The write end of the stdin pipe (with stdin_pipe), -1 otherwise. Non-blocking.
    int stdin_fd() const noexcept { return m_stdin; }
    void close_stdout() noexcept;

    bool running() noexcept;  // false once it has exited (its status is then known)
    // Waits for exit until deadline. Returns the wait status (as waitpid's) or
    // nullopt when still running at the deadline.
    std::optional<int> wait_until(clock::time_point deadline) noexcept;
    // The wait status once it has exited.
    std::optional<int> status() const noexcept { return m_status; }

    // Sends sig to the whole process group (children of the child included,
    // also after the child itself exited). Returns false when the child has
    // exited or stop() was called.
    bool signal_group(int sig) noexcept;

    // Asks the reaper to SIGKILL the program and every descendant now, and
    // returns at once (running() turns false when it is done).
    void kill() noexcept;

    // SIGTERM to the group, wait up to grace, then the reaper SIGKILLs every
    // descendant left (in its group or not), reap. grace = 0 skips straight
    // to SIGKILL. Afterwards pid() is -1 and status() holds the wait status.
    // Idempotent, noexcept.
    void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(2000)) noexcept;

private:
    int program_status(int reaper_status) noexcept;
    std::optional<int> said_status() noexcept;
    std::optional<int> wait_lingering(clock::time_point deadline) noexcept;

    int m_pid = -1;
    int m_pidfd = -1;
    int m_stdout = -1;
    int m_stderr = -1;
    int m_stdin = -1;
    std::optional<int> m_status;
    int m_group = -1;     // the reaper
    bool m_own_namespace = false;
    bool m_linger = false;
    int m_lifeline = -1;  // 'k': kill now; 'l': kill now and go; end of file: kernex died
};

// The file that exec would run for name with this PATH value (the system's
// default path when empty): name itself (if executable) when it contains '/', else the first
// executable regular file in PATH's directories (relative ones relative to
// cwd). nullopt when there is none.
std::optional<std::filesystem::path> find_program(std::string_view name, std::string_view path,
                                                  const std::filesystem::path& cwd = {});

// Describes a wait status: "exit code 3", "killed by signal 9 (SIGKILL)".
std::string describe_status(int wait_status);
// Exit code as a shell reports it: the code, or 128 + signal.
int exit_code_of(int wait_status) noexcept;

struct run_options {
    std::chrono::milliseconds timeout{60'000};
    std::size_t max_output = 1u << 20;                 // bytes kept; the rest is drained and counted
    std::function<void(std::string_view)> on_output;   // called as output arrives (within the cap)
    // on_output sees every byte read, those beyond max_output too (for a
    // caller that caps the output itself: max_output 0 then keeps none here).
    bool on_output_uncapped = false;
    // With spawn_options::linger: the child, its program's tree gone and its
    // reaper holding the tree, is moved here (empty it, or what it held is
    // stopped first) instead of being stopped: the caller stops it once
    // something else holds the tree. nullptr: stopped as any other.
    child_process* lingering = nullptr;
    // When this fd becomes readable the child is killed as on timeout, but
    // with exit_code 130 and interrupted = true (a self-pipe for Ctrl-C). -1: none.
    int cancel_fd = -1;
};

struct run_result {
    int exit_code = 0;            // 124 on timeout, 128+N when killed by signal N
    std::string output;           // stdout and stderr as they arrived, capped
    bool timed_out = false;
    bool interrupted = false;     // cancel_fd became readable
    bool truncated = false;
    std::uint64_t dropped_bytes = 0;
    std::chrono::nanoseconds elapsed{};
};

// Runs a child to completion with stdin from /dev/null, stdout+stderr merged
// into one pipe. On timeout the program and all its descendants are killed
// and partial output kept. Output beyond max_output is read and dropped so
// the child never blocks. When the program exits, every process it started
// is killed too (whatever session or group it moved to), so the pipe ends.
// Throws kernex::error only when the child cannot be spawned.
run_result run_process(spawn_options options, const run_options& limits);

// A process that does nothing until stopped (`sleep infinity`, an empty
// environment, no output). With remove_if_orphaned or
// remove_tree_if_orphaned set, a child_process of it carries those paths on
// kernex's reaper for as long as it runs: a kill -9 of kernex removes them.
spawn_options keeper_spawn_options();

}  // namespace kernex
