// One long-lived `bash --noprofile --norc` and the protocol to run cells in
// it: output streams while a cell runs, the cell ends when the driver inside
// the shell says so on its control pipe (with $?), interrupts reach the
// shell's process group, and the whole group goes when the session stops.
#pragma once

#include "child.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <string>

namespace kernex::bash {

struct input_answer {
    enum class kind {
        given,      // value is the client's answer
        refused,    // no stdin (allow_stdin false, silent): read sees EOF
        cancelled,  // interrupted or shutting down: the shell is being signalled, nothing is sent
    } what = kind::refused;
    std::string value;
};

struct cell_handlers {
    // Output as it arrives; name is "stdout" or "stderr", text is valid UTF-8.
    std::function<void(const std::string& name, const std::string& text)> on_stream;
    // A `display PATH` request from the shell; returns whether it was shown.
    std::function<bool(const std::string& path)> on_display;
    // A `clear [-w]` request: clear the cell's output (wait: when new output arrives).
    std::function<void(bool wait)> on_clear;
    // A `read` on the shell's stdin during the cell: the client's answer.
    std::function<input_answer(const std::string& prompt, bool password)> on_input;
};

enum class cell_end { finished, interrupted, shell_exited };

struct cell_outcome {
    cell_end end = cell_end::finished;
    int status = 0;               // the cell's $?, or the shell's exit code when it exited
    std::string how_shell_ended;  // with shell_exited: "exit code 3", "killed by signal 9 (Killed)"
};

class shell_session {
public:
    // Keeps the path; the shell starts with start().
    explicit shell_session(std::string bash_path);
    ~shell_session();  // stop()
    shell_session(const shell_session&) = delete;
    shell_session& operator=(const shell_session&) = delete;

    // Starts the shell and waits until its driver is ready. Throws
    // std::runtime_error (with what bash printed) when it cannot start.
    void start();
    bool running() const noexcept { return m_running; }

    // Runs one cell. Output and display requests reach `handlers` while it
    // runs; returns when the driver reports the cell done or the shell dies
    // (then the session is stopped: start() gives a fresh shell).
    // Requires running(). Never times out: interrupts end long cells.
    cell_outcome run_cell(const std::string& code, const cell_handlers& handlers);

    // Runs `code` in a subshell of the live shell (its variables, functions,
    // aliases and directory) and returns its stdout, or "" when the shell is
    // not running or does not answer before `timeout`.
    std::string query(const std::string& code,
                      std::chrono::milliseconds timeout = std::chrono::seconds(5));

    // Safe from any thread: stops the running cell, if any, with SIGINT to
    // the shell's process group. An interrupt between cells is dropped.
    void request_interrupt() noexcept;

    // Ends the shell's whole process group (SIGTERM, grace, SIGKILL) and
    // reaps. Idempotent.
    void stop() noexcept;

    // The SIGTERM path, from the signal thread while the main thread may be
    // inside run_cell: ends the group without touching the session's fds.
    void terminate_group() noexcept;

    pid_t pid() const noexcept { return m_pid; }
    const std::string& version() const noexcept { return m_version; }

private:
    enum class wait_result { satisfied, shell_died, timed_out };
    wait_result wait_for(const std::function<bool()>& satisfied,
                         std::optional<std::chrono::steady_clock::time_point> deadline,
                         const cell_handlers* handlers);
    bool send_command(const char* kind, const std::string& payload);
    void read_control(const cell_handlers* handlers);
    void handle_record(const std::string& record, const cell_handlers* handlers);
    void read_output(int index, const cell_handlers* handlers, bool flush);
    void setup_write_order(int out, int err) noexcept;
    void read_write_order();
    void read_outputs(const cell_handlers* handlers, bool flush);
    std::size_t read_page(int index, const cell_handlers* handlers);
    int write_order_poll_timeout(int timeout_ms) const;
    void write_ack(const std::string& bytes);
    void emit_output(int index, const cell_handlers* handlers, bool flush);
    void on_shell_death(const cell_handlers* handlers);
    void close_channels() noexcept;

    std::string m_bash_path;
    bool m_running = false;
    std::atomic<pid_t> m_pid{-1};
    std::atomic<pid_t> m_watchdog{-1};
    unique_fd m_command;   // write end of fd 60
    unique_fd m_ack;       // write end of fd 61
    unique_fd m_control;   // read end of fd 62
    unique_fd m_output[2]; // read ends of stdout, stderr
    unique_fd m_lifeline;  // the watchdog kills the group when this closes
    unique_fd m_pidfd;     // readable when the shell exits (-1 on kernels without pidfd)
    unique_fd m_interrupts;  // eventfd: the signal thread writes, the cell loop reads

    std::string m_control_buffer;
    std::string m_pending[2];  // output bytes held back (a cut UTF-8 sequence or runner name)

    // stdout and stderr in the order they were written (issue 18 item 11): both
    // pipes hold one page, in packet mode, so a writer that has a page unread
    // waits for us; an inotify watch on each tells which pipe each completed
    // write went to, in order. Without inotify (m_write_events -1) the pipes
    // are read as they become ready, and the order across them is not kept.
    unique_fd m_write_events;
    int m_watch[2] = {-1, -1};
    std::deque<int> m_write_order;  // the stream of each completed write not yet read
    bool m_order_lost = false;      // the event queue overflowed: read both as they come, once
    bool m_large_write[2] = {};     // reading a write larger than a page as it goes, before its event
    int m_unpublished = -1;         // the stream whose pages read are not yet published
    std::chrono::steady_clock::time_point m_unpublished_since;
    std::chrono::steady_clock::time_point m_window_start;  // the interval switches are counted in
    int m_window_messages = 0;
    bool m_throttled = false;       // a switch waits for the next interval
    std::optional<std::chrono::steady_clock::time_point> m_unannounced_since[2];
    std::string m_version;
    bool m_ready = false;
    bool m_cell_started = false;
    bool m_cell_done = false;
    int m_cell_status = 0;
    bool m_interrupt_requested = false;
    bool m_interrupt_sent = false;
    bool m_shell_died = false;
    bool m_reaped = false;  // the dead shell was already waited for
    int m_exit_wait_status = 0;
    std::optional<std::string> m_reply;
    std::size_t m_stale_replies = 0;  // answers to queries that timed out, still to come
};

// "exit code 3", "killed by signal 9 (Killed)".
std::string describe_wait_status(int wait_status);
// As the shell reports it: the exit code, or 128 + the signal.
int shell_exit_code(int wait_status) noexcept;

}  // namespace kernex::bash
