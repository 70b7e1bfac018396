// kernex-test-kernel: a small, fast, native Jupyter kernel (protocol 5.3) that
// kernex's integration tests, benchmarks and stress tests build and drive. It
// speaks the protocol correctly and misbehaves only when a cell tells it to,
// so every failure path of a client or a manager can be exercised
// deterministically and cheaply (no Python start-up, microseconds per cell).
//
// Usage:
//   kernex-test-kernel -f CONNECTION_FILE [--exit-at-start CODE]
//                      [--slow-start MS] [--late-stdin MS] [--no-heartbeat] [--iopub-welcome]
//                      [--no-shutdown-broadcast]
//     --exit-at-start CODE  write "test kernel: failing at start on purpose"
//                           to stderr and exit with CODE before binding
//     --slow-start MS       sleep MS milliseconds before binding
//     --late-stdin MS       bind stdin MS milliseconds after the other sockets
//                           (shell answers meanwhile): a client that runs a
//                           cell before its stdin connection is up loses input
//     --no-heartbeat        bind the heartbeat socket but never answer it
//     --iopub-welcome       iopub is an XPUB socket that sends each new
//                           subscriber an iopub_welcome message (JEP 65)
//     --no-shutdown-broadcast  answer shutdown_request only to the asker, not
//                           also on iopub as ipykernel does (most kernels)
//   The environment may ask for the same (so a kernelspec's env can):
//   KERNEX_TEST_KERNEL_EXIT_AT_START=CODE, KERNEX_TEST_KERNEL_SLOW_START=MS,
//   KERNEX_TEST_KERNEL_LATE_STDIN=MS, KERNEX_TEST_KERNEL_NO_HEARTBEAT=1,
//   KERNEX_TEST_KERNEL_IOPUB_WELCOME=1, KERNEX_TEST_KERNEL_NO_SHUTDOWN_BROADCAST=1.
//   Exit status: 0 after a shutdown_request, SIGTERM or the death of the
//   parent named by JPY_PARENT_PID; 1 when a socket cannot be bound (e.g.
//   EADDRINUSE, so a manager's port retry can be tested); 2 for a bad command
//   line or connection file; what `crash` says.
//
// Code is a sequence of lines, one command each. Blank lines and lines whose
// first non-blank character is '#' are skipped; a line ending in '\'
// continues on the next one (joined with a newline). TEXT is the rest of the
// line after the command and one space, kept verbatim.
//   print TEXT              stream stdout "TEXT\n"
//   eprint TEXT             stream stderr "TEXT\n"
//   write TEXT              stream stdout "TEXT" (no newline)
//   result TEXT             execute_result {"text/plain": TEXT} (not when silent)
//   display ID TEXT         display_data text/plain TEXT, transient display_id ID
//   display_png             display_data: a valid 4x4 PNG (base64) + text/plain
//   display_html HTML       display_data text/html
//   update_display ID TEXT  update_display_data text/plain TEXT for display_id ID
//   clear [wait]            clear_output (wait true with "wait")
//   sleep MS                sleep; SIGINT or interrupt_request ends the cell
//                           with error KeyboardInterrupt
//   hang                    busy forever with SIGINT ignored and control not
//                           read: only SIGTERM or SIGKILL ends it (or the
//                           death of the JPY_PARENT_PID parent, so a crashed
//                           test run leaves no orphan); heartbeat still answers
//   crash [CODE|SIGNAME]    flush the outputs so far, then die mid-cell without
//                           a reply: exit status CODE (default 3), or killed by
//                           the signal (SIGKILL, SIGSEGV, SIGABRT, ...)
//   input PROMPT            input_request (password false), wait for the
//                           input_reply, print "got: VALUE"; interruptible;
//                           error StdinNotImplementedError if !allow_stdin
//   password PROMPT         the same with password true
//   error NAME VALUE        error output and error reply (ename NAME, evalue
//                           VALUE, a 2-line traceback with ANSI colours)
//   set KEY VALUE           remember VALUE across cells (also readable as a
//                           user_expression named KEY)
//   get KEY                 print VALUE; error KeyError when unset
//   forge                   on iopub, parented to this request: a stream
//                           "forged\n" with a wrong signature, a stream
//                           "unsigned\n" with an empty signature, and a
//                           byte-exact replay of the last valid iopub message
//                           sent (the cell's last output, else execute_input)
//   flood N                 N stream messages "line i\n", i = 1..N
//   lines N                 "line i\n", i = 1..N, batched into stream messages
//                           of at most 64 KiB
//   big BYTES               one stream message of BYTES 'x' (k/m/g suffixes)
//   noreply                 never reply (heartbeat still answers) until
//                           interrupted (then error KeyboardInterrupt) or killed
//   pid                     print the kernel's pid
//   date [TEXT]             from now on every message's header.date is TEXT
//                           verbatim (no TEXT: the clock's again), so a
//                           client's use of the kernel's dates can be seen
//   abort N                 answer the next N execute_requests "aborted"
//                           without running them, as ipykernel answers one
//                           that reaches it inside its post-error abort window
//   EXPR                    an integer expression of + - * and parentheses
//                           ("1+1") gives execute_result with its value
// Any other line is error UnknownCommand; a failed command ends the cell, and
// with stop_on_error the execute_requests already queued are answered
// "aborted" (as ipykernel).
//
// Requests: kernel_info, execute, shutdown (shell or control; reply, then exit
// 0), interrupt (control), is_complete (incomplete when the code ends with
// '\'), complete (command names), inspect (a command's help), history (empty),
// comm_info (empty). Every request is wrapped in status busy/idle on iopub,
// which is how clients prove their iopub subscription. Replies and iopub
// messages carry the kernel's own session id (new at each start), as
// ipykernel's do: that is how a client tells a restarted kernel.

#include <kernex/connection.hpp>
#include <kernex/error.hpp>
#include <kernex/message.hpp>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <charconv>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

using kernex::json;
using steady = std::chrono::steady_clock;

constexpr std::string_view implementation_version = "0.1.0";
constexpr std::size_t stream_batch_bytes = 64 * 1024;
constexpr int socket_linger_ms = 1000;
// How often a wait looks at whether the parent died: rarely enough to cost
// nothing, often enough that an orphaned test kernel goes away quickly.
constexpr long parent_check_ms = 1000;
constexpr const char* heartbeat_stop_endpoint = "inproc://kernex-test-heartbeat-stop";

// A 4x4 RGB checkerboard, made once with Python's zlib and struct and checked
// with file(1) and Pillow: small enough to inline, real enough that clients
// which save or decode images get a valid PNG.
constexpr std::string_view tiny_png_base64 =
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAGElEQVR42mO4YGBgkHABQjLAWUCSAacMABVSFIE96ab/"
    "AAAAAElFTkSuQmCC";

// ---------------------------------------------------------------------------
// Signals. The handlers only write a byte to a pipe that every wait polls
// next to its sockets, so a SIGINT wakes a sleeping cell at once and nothing
// unsafe runs inside a handler.

int g_signal_pipe[2] = {-1, -1};
// Checked by loops that do not poll (flood, lines), between messages.
volatile std::sig_atomic_t g_sigint_seen = 0;

void on_signal(int sig)
{
    const int saved_errno = errno;
    if (sig == SIGINT)
        g_sigint_seen = 1;
    const char c = sig == SIGINT ? 'i' : 't';
    [[maybe_unused]] const auto written = ::write(g_signal_pipe[1], &c, 1);
    errno = saved_errno;
}

void install_signal_handlers()
{
    // Non-blocking both ways: a burst of signals must never block a handler.
    if (::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
}

// ---------------------------------------------------------------------------
// Control flow that leaves a cell early.

// Unwinds to main from anywhere: the kernel closes its sockets (flushing what
// it already sent, so a crash keeps the outputs before it) and then exits
// with `code`, or dies of `signal` when that is not 0.
struct exit_request {
    int code = 0;
    int signal = 0;
};

// A command failed: becomes an error output and an error execute_reply.
struct cell_error {
    std::string ename;
    std::string evalue;
    json traceback = json::array();  // filled in by run_code, which knows the line
};

struct bind_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------
// Small helpers.

// Field readers that never throw: a peer sending a wrong type must not kill
// the kernel, it just gets the default.
std::string string_field(const json& j, const char* key, std::string fallback = {})
{
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

bool bool_field(const json& j, const char* key, bool fallback)
{
    auto it = j.find(key);
    return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

std::optional<std::int64_t> int_field(const json& j, const char* key)
{
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer())
        return std::nullopt;
    return it->get<std::int64_t>();
}

std::pair<std::string_view, std::string_view> split_word(std::string_view s)
{
    const auto space = s.find(' ');
    if (space == std::string_view::npos)
        return {s, {}};
    return {s.substr(0, space), s.substr(space + 1)};
}

std::string_view trim_left(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    return s;
}

// Parses a non-negative count with an optional k/m/g (powers of 1024) suffix;
// a bad one is the user's error, so it becomes a ValueError in the cell.
std::uint64_t parse_count(std::string_view command, std::string_view arg, bool suffixes = false)
{
    auto bad = [&] {
        return cell_error{"ValueError", std::string(command) + ": expected a non-negative integer, got '" +
                                            std::string(arg) + "'"};
    };
    std::string_view digits = arg;
    while (!digits.empty() && digits.back() == ' ')
        digits.remove_suffix(1);
    std::uint64_t scale = 1;
    if (suffixes && !digits.empty()) {
        switch (digits.back()) {
        case 'k': case 'K': scale = 1ull << 10; break;
        case 'm': case 'M': scale = 1ull << 20; break;
        case 'g': case 'G': scale = 1ull << 30; break;
        default: break;
        }
        if (scale != 1)
            digits.remove_suffix(1);
    }
    if (digits.empty() || digits.size() > 15)
        throw bad();
    std::uint64_t value = 0;
    for (char c : digits) {
        if (c < '0' || c > '9')
            throw bad();
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return value * scale;
}

// Integer arithmetic so that the same "1+1" cell benchmarks both ipykernel
// and this kernel. Returns nullopt for anything that is not entirely an
// expression of integers, + - * and parentheses, or that overflows.
class arithmetic {
public:
    static std::optional<std::int64_t> evaluate(std::string_view text)
    {
        arithmetic a(text);
        std::int64_t value = 0;
        if (!a.expression(value, 0))
            return std::nullopt;
        a.skip_spaces();
        if (a.m_pos != a.m_text.size())
            return std::nullopt;
        return value;
    }

private:
    explicit arithmetic(std::string_view text) : m_text(text) {}

    void skip_spaces()
    {
        while (m_pos < m_text.size() && (m_text[m_pos] == ' ' || m_text[m_pos] == '\t'))
            ++m_pos;
    }

    bool accept(char c)
    {
        skip_spaces();
        if (m_pos < m_text.size() && m_text[m_pos] == c) {
            ++m_pos;
            return true;
        }
        return false;
    }

    bool expression(std::int64_t& value, int depth)
    {
        if (!term(value, depth))
            return false;
        for (;;) {
            const bool plus = accept('+');
            if (!plus && !accept('-'))
                return true;
            std::int64_t rhs = 0;
            if (!term(rhs, depth))
                return false;
            if (plus ? __builtin_add_overflow(value, rhs, &value) : __builtin_sub_overflow(value, rhs, &value))
                return false;
        }
    }

    bool term(std::int64_t& value, int depth)
    {
        if (!factor(value, depth))
            return false;
        while (accept('*')) {
            std::int64_t rhs = 0;
            if (!factor(rhs, depth) || __builtin_mul_overflow(value, rhs, &value))
                return false;
        }
        return true;
    }

    bool factor(std::int64_t& value, int depth)
    {
        if (depth > 64)  // bounded recursion: a cell of "((((..." must not overflow the stack
            return false;
        if (accept('-')) {
            if (!factor(value, depth + 1))
                return false;
            return !__builtin_sub_overflow(std::int64_t{0}, value, &value);
        }
        if (accept('('))
            return expression(value, depth + 1) && accept(')');
        skip_spaces();
        const std::size_t start = m_pos;
        value = 0;
        while (m_pos < m_text.size() && m_text[m_pos] >= '0' && m_text[m_pos] <= '9') {
            if (__builtin_mul_overflow(value, 10, &value) ||
                __builtin_add_overflow(value, m_text[m_pos] - '0', &value))
                return false;
            ++m_pos;
        }
        return m_pos > start;
    }

    std::string_view m_text;
    std::size_t m_pos = 0;
};

// Jupyter counts cursor positions in Unicode code points, not bytes.
std::size_t byte_offset(std::string_view s, std::int64_t code_points)
{
    std::size_t i = 0;
    while (i < s.size() && code_points > 0) {
        ++i;
        while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80)
            ++i;
        --code_points;
    }
    return i;
}

std::int64_t count_code_points(std::string_view s)
{
    std::int64_t n = 0;
    for (char c : s)
        n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
}

// zmq_poll that reports a signal as "nothing ready": our own handlers cause
// EINTR, and the byte they wrote to the pipe is seen on the next round.
int poll_items(zmq::pollitem_t* items, std::size_t count, long timeout_ms)
{
    const int rc = zmq_poll(items, static_cast<int>(count), timeout_ms);
    if (rc < 0) {
        if (zmq_errno() == EINTR) {
            for (std::size_t i = 0; i < count; ++i)
                items[i].revents = 0;
            return 0;
        }
        throw zmq::error_t();
    }
    return rc;
}

// Runs on its own thread with its own sockets, so a cell that sleeps, hangs
// or never replies still looks alive to a heartbeat monitor, as ipykernel
// does. Reports the bind result through `bound`; stopped by a message on the
// inproc stop socket.
void heartbeat_loop(zmq::context_t& context, std::string endpoint, bool answer,
                    std::promise<std::string> bound)
{
    try {
        zmq::socket_t echo(context, zmq::socket_type::rep);
        zmq::socket_t stop(context, zmq::socket_type::pair);
        echo.set(zmq::sockopt::linger, 0);
        stop.set(zmq::sockopt::linger, 0);
        try {
            echo.bind(endpoint);
            stop.connect(heartbeat_stop_endpoint);
        } catch (const zmq::error_t& e) {
            bound.set_value("cannot bind heartbeat to " + endpoint + ": " + e.what());
            return;
        }
        bound.set_value({});
        zmq::pollitem_t items[] = {{stop.handle(), 0, ZMQ_POLLIN, 0}, {echo.handle(), 0, ZMQ_POLLIN, 0}};
        // Without answering, pings just queue up: the socket stays bound so a
        // client connects fine and then sees the kernel as dead.
        const std::size_t count = answer ? 2 : 1;
        for (;;) {
            poll_items(items, count, -1);
            if (items[0].revents)
                return;
            if (count == 2 && items[1].revents) {
                std::vector<zmq::message_t> parts;
                if (zmq::recv_multipart(echo, std::back_inserter(parts), zmq::recv_flags::dontwait))
                    zmq::send_multipart(echo, parts);
            }
        }
    } catch (const std::exception& e) {
        std::cerr << "test kernel: heartbeat stopped: " << e.what() << '\n';
    }
}

// ---------------------------------------------------------------------------

struct options {
    std::filesystem::path connection_file;
    std::optional<int> exit_at_start;
    long slow_start_ms = 0;
    long late_stdin_ms = 0;  // stdin bound this long after the other sockets
    bool heartbeat = true;
    bool iopub_welcome = false;
    bool shutdown_broadcast = true;
};

// The request a cell runs for and what it allowed.
struct cell {
    const kernex::message& request;
    bool silent = false;
    bool allow_stdin = true;
};

enum class wake { deadline, interrupt, input_reply };

class test_kernel;

struct command {
    std::string_view name;
    std::string_view usage;
    std::string_view help;
    void (test_kernel::*run)(cell&, std::string_view);
};

class test_kernel {
public:
    // Binds all five sockets. Throws bind_failure naming the channel and
    // endpoint when one cannot be bound.
    test_kernel(const options& opts, const kernex::connection_info& info);
    ~test_kernel();
    test_kernel(const test_kernel&) = delete;
    test_kernel& operator=(const test_kernel&) = delete;

    // Serves requests until a shutdown_request, SIGTERM, the parent's death or
    // a crash command; returns how the process should end.
    exit_request run();

private:
    static const std::vector<command>& commands();
    static const command* find_command(std::string_view name);

    // Sockets.
    void bind(zmq::socket_t& socket, const std::string& endpoint, std::string_view channel);
    std::optional<kernex::message> receive(zmq::socket_t& socket, std::string_view channel);
    static void send(zmq::socket_t& socket, const std::vector<std::string>& frames);
    void reply(zmq::socket_t& socket, const kernex::message& request, std::string type, json content);
    std::vector<std::string> encode_iopub(const kernex::message& parent, std::string type, json content);
    void publish(const kernex::message& parent, std::string type, json content);
    void publish_status(const kernex::message& parent, std::string_view state);
    void stream(const cell& c, std::string_view name, std::string text);
    void accept_subscriptions();
    bool drain_signals();
    void check_parent() const;
    long poll_timeout(std::optional<steady::time_point> deadline) const;
    wake wait(std::optional<steady::time_point> deadline, kernex::message* input_reply);

    // Requests.
    void handle_shell(const kernex::message& request);
    bool handle_control(const kernex::message& request);
    void handle_request(zmq::socket_t& socket, const kernex::message& request);
    bool execute(const kernex::message& request);
    std::vector<kernex::message> take_queued();
    void abort_queued_executes(std::vector<kernex::message> queued);
    void run_code(cell& c, std::string_view code);
    json user_expressions(const json& content) const;
    json complete(const json& content) const;
    json inspect(const json& content) const;

    // Commands.
    void cmd_print(cell& c, std::string_view arg);
    void cmd_eprint(cell& c, std::string_view arg);
    void cmd_write(cell& c, std::string_view arg);
    void cmd_result(cell& c, std::string_view arg);
    void cmd_display(cell& c, std::string_view arg);
    void cmd_display_png(cell& c, std::string_view arg);
    void cmd_display_html(cell& c, std::string_view arg);
    void cmd_update_display(cell& c, std::string_view arg);
    void cmd_clear(cell& c, std::string_view arg);
    void cmd_sleep(cell& c, std::string_view arg);
    void cmd_hang(cell& c, std::string_view arg);
    void cmd_crash(cell& c, std::string_view arg);
    void cmd_input(cell& c, std::string_view arg);
    void cmd_password(cell& c, std::string_view arg);
    void ask(cell& c, std::string_view prompt, bool password);
    void cmd_error(cell& c, std::string_view arg);
    void cmd_set(cell& c, std::string_view arg);
    void cmd_get(cell& c, std::string_view arg);
    void cmd_forge(cell& c, std::string_view arg);
    void cmd_flood(cell& c, std::string_view arg);
    void cmd_lines(cell& c, std::string_view arg);
    void cmd_big(cell& c, std::string_view arg);
    void cmd_noreply(cell& c, std::string_view arg);
    void cmd_pid(cell& c, std::string_view arg);
    void cmd_date(cell& c, std::string_view arg);
    void cmd_abort(cell& c, std::string_view arg);

    zmq::context_t m_context;
    zmq::socket_t m_shell;
    zmq::socket_t m_control;
    zmq::socket_t m_stdin;
    zmq::socket_t m_iopub;
    zmq::socket_t m_heartbeat_stop;
    kernex::frame_codec m_codec;
    std::string m_session;
    std::string m_date;  // every message's header.date when set (the date command)
    std::string m_topic_prefix;
    bool m_iopub_welcome;
    bool m_shutdown_broadcast;
    // --late-stdin: when and where stdin is bound (a client that is ready
    // before then loses the cell's input_request, as with a slow stdin connection).
    std::optional<steady::time_point> m_stdin_bind_at;
    std::string m_stdin_endpoint;
    pid_t m_parent_pid = 0;  // 0: no parent to watch
    int m_execution_count = 0;
    std::map<std::string, std::string, std::less<>> m_state;
    // The last valid iopub message, byte for byte, for `forge` to replay.
    std::vector<std::string> m_last_iopub;
    // execute_requests still to answer "aborted" (the abort command).
    std::uint64_t m_abort_next = 0;
    // Last member: destroyed (joined) first, before the sockets and context.
    std::jthread m_heartbeat;
};

const std::vector<command>& test_kernel::commands()
{
    static const std::vector<command> table = {
        {"print", "print TEXT", "stream stdout TEXT and a newline", &test_kernel::cmd_print},
        {"eprint", "eprint TEXT", "stream stderr TEXT and a newline", &test_kernel::cmd_eprint},
        {"write", "write TEXT", "stream stdout TEXT without a newline", &test_kernel::cmd_write},
        {"result", "result TEXT", "execute_result with text/plain TEXT", &test_kernel::cmd_result},
        {"display", "display ID TEXT", "display_data text/plain TEXT with display_id ID", &test_kernel::cmd_display},
        {"display_png", "display_png", "display_data with a 4x4 PNG", &test_kernel::cmd_display_png},
        {"display_html", "display_html HTML", "display_data text/html HTML", &test_kernel::cmd_display_html},
        {"update_display", "update_display ID TEXT", "update_display_data of display ID", &test_kernel::cmd_update_display},
        {"clear", "clear [wait]", "clear_output", &test_kernel::cmd_clear},
        {"sleep", "sleep MS", "sleep, interruptible (KeyboardInterrupt)", &test_kernel::cmd_sleep},
        {"hang", "hang", "busy forever, SIGINT ignored; only SIGTERM or SIGKILL end it", &test_kernel::cmd_hang},
        {"crash", "crash [CODE|SIGNAME]", "die mid-cell after flushing outputs (exit 3 by default)", &test_kernel::cmd_crash},
        {"input", "input PROMPT", "ask on stdin, then print \"got: VALUE\"", &test_kernel::cmd_input},
        {"password", "password PROMPT", "ask on stdin with password true, then print \"got: VALUE\"", &test_kernel::cmd_password},
        {"error", "error NAME VALUE", "raise an error NAME: VALUE", &test_kernel::cmd_error},
        {"set", "set KEY VALUE", "remember VALUE under KEY across cells", &test_kernel::cmd_set},
        {"get", "get KEY", "print the VALUE of KEY (KeyError when unset)", &test_kernel::cmd_get},
        {"forge", "forge", "send a forged, an unsigned and a replayed iopub message", &test_kernel::cmd_forge},
        {"flood", "flood N", "N stream messages \"line i\"", &test_kernel::cmd_flood},
        {"lines", "lines N", "N lines \"line i\" in stream messages of at most 64 KiB", &test_kernel::cmd_lines},
        {"big", "big BYTES", "one stream message of BYTES 'x' (k/m/g suffixes)", &test_kernel::cmd_big},
        {"noreply", "noreply", "never reply until interrupted", &test_kernel::cmd_noreply},
        {"pid", "pid", "print the kernel's process id", &test_kernel::cmd_pid},
        {"date", "date [TEXT]", "every later message's header.date is TEXT", &test_kernel::cmd_date},
        {"abort", "abort N", "answer the next N execute_requests \"aborted\"", &test_kernel::cmd_abort},
    };
    return table;
}

const command* test_kernel::find_command(std::string_view name)
{
    for (const command& c : commands())
        if (c.name == name)
            return &c;
    return nullptr;
}

test_kernel::test_kernel(const options& opts, const kernex::connection_info& info)
    : m_context(1),
      m_shell(m_context, zmq::socket_type::router),
      m_control(m_context, zmq::socket_type::router),
      m_stdin(m_context, zmq::socket_type::router),
      m_iopub(m_context, opts.iopub_welcome ? zmq::socket_type::xpub : zmq::socket_type::pub),
      m_heartbeat_stop(m_context, zmq::socket_type::pair),
      m_codec(info.key, info.signature_scheme),
      m_session(kernex::new_id()),
      m_iopub_welcome(opts.iopub_welcome),
      m_shutdown_broadcast(opts.shutdown_broadcast)
{
    m_topic_prefix = "kernel." + m_session.substr(0, 8) + ".";
    for (zmq::socket_t* s : {&m_shell, &m_control, &m_stdin}) {
        // A client that reconnects with the same identity (a restart, a second
        // attach) takes the route over instead of being ignored.
        s->set(zmq::sockopt::router_handover, 1);
        s->set(zmq::sockopt::sndhwm, 0);
        s->set(zmq::sockopt::linger, socket_linger_ms);
    }
    // Unbounded, because a PUB socket silently drops at its high-water mark and
    // flood/lines tests count every line.
    m_iopub.set(zmq::sockopt::sndhwm, 0);
    m_iopub.set(zmq::sockopt::linger, socket_linger_ms);
    if (m_iopub_welcome)
        m_iopub.set(zmq::sockopt::xpub_verbose, 1);
    m_heartbeat_stop.set(zmq::sockopt::linger, 0);

    bind(m_shell, info.shell_endpoint(), "shell");
    bind(m_control, info.control_endpoint(), "control");
    if (opts.late_stdin_ms > 0) {
        m_stdin_endpoint = info.stdin_endpoint();
        m_stdin_bind_at = steady::now() + std::chrono::milliseconds(opts.late_stdin_ms);
    } else {
        bind(m_stdin, info.stdin_endpoint(), "stdin");
    }
    bind(m_iopub, info.iopub_endpoint(), "iopub");
    m_heartbeat_stop.bind(heartbeat_stop_endpoint);

    // The heartbeat thread must never take our SIGINT/SIGTERM: the main
    // thread's waits are what react to them.
    sigset_t blocked, previous;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &blocked, &previous);
    std::promise<std::string> bound;
    auto bound_result = bound.get_future();
    m_heartbeat = std::jthread(heartbeat_loop, std::ref(m_context), info.hb_endpoint(), opts.heartbeat,
                               std::move(bound));
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    if (std::string failure = bound_result.get(); !failure.empty())
        throw bind_failure(failure);

    // jupyter_client and kernex set JPY_PARENT_PID; when that parent dies the
    // kernel would otherwise be orphaned forever (think of a "hang" cell
    // after the test runner crashed).
    if (std::getenv("JPY_PARENT_PID") != nullptr)
        m_parent_pid = ::getppid();
}

test_kernel::~test_kernel()
{
    if (m_heartbeat.joinable()) {
        try {
            m_heartbeat_stop.send(zmq::str_buffer("stop"), zmq::send_flags::none);
        } catch (const zmq::error_t&) {
        }
        m_heartbeat.join();
    }
}

void test_kernel::bind(zmq::socket_t& socket, const std::string& endpoint, std::string_view channel)
{
    try {
        socket.bind(endpoint);
    } catch (const zmq::error_t& e) {
        throw bind_failure("cannot bind " + std::string(channel) + " to " + endpoint + ": " + e.what());
    }
}

std::optional<kernex::message> test_kernel::receive(zmq::socket_t& socket, std::string_view channel)
{
    std::vector<zmq::message_t> parts;
    try {
        if (!zmq::recv_multipart(socket, std::back_inserter(parts), zmq::recv_flags::dontwait))
            return std::nullopt;
    } catch (const zmq::error_t& e) {
        if (e.num() == EINTR)
            return std::nullopt;  // still queued: the level-triggered poll says so again
        throw;
    }
    std::vector<std::string> frames;
    frames.reserve(parts.size());
    for (const auto& part : parts)
        frames.emplace_back(part.data<char>(), part.size());
    kernex::reject_reason why{};
    auto msg = m_codec.decode(std::move(frames), &why);
    if (!msg)
        std::cerr << "test kernel: dropped a message on " << channel << ": " << kernex::to_string(why) << '\n';
    return msg;
}

void test_kernel::send(zmq::socket_t& socket, const std::vector<std::string>& frames)
{
    for (std::size_t i = 0; i < frames.size(); ++i) {
        const auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
        // Neither ROUTER nor PUB with an unbounded high-water mark blocks, so
        // a send either succeeds or fails for good.
        socket.send(zmq::buffer(frames[i]), flags);
    }
}

void test_kernel::reply(zmq::socket_t& socket, const kernex::message& request, std::string type, json content)
{
    kernex::message msg = kernex::make_reply(request, std::move(type), std::move(content), "kernel");
    msg.header.session = m_session;  // its own, as ipykernel: a restarted kernel has another
    if (!m_date.empty()) msg.header.date = m_date;
    send(socket, m_codec.encode(std::move(msg)));
}

std::vector<std::string> test_kernel::encode_iopub(const kernex::message& parent, std::string type, json content)
{
    kernex::message msg = kernex::make_reply(parent, std::move(type), std::move(content), "kernel");
    msg.header.session = m_session;
    if (!m_date.empty()) msg.header.date = m_date;
    msg.identities.assign(1, m_topic_prefix + msg.header.msg_type);
    return m_codec.encode(std::move(msg));
}

void test_kernel::publish(const kernex::message& parent, std::string type, json content)
{
    auto frames = encode_iopub(parent, std::move(type), std::move(content));
    send(m_iopub, frames);
    m_last_iopub = std::move(frames);
}

void test_kernel::publish_status(const kernex::message& parent, std::string_view state)
{
    publish(parent, "status", {{"execution_state", state}});
}

void test_kernel::stream(const cell& c, std::string_view name, std::string text)
{
    json content = json::object();  // (an initializer list would copy the text)
    content["name"] = name;
    content["text"] = std::move(text);
    publish(c.request, "stream", std::move(content));
}

void test_kernel::accept_subscriptions()
{
    for (;;) {
        zmq::message_t frame;
        if (!m_iopub.recv(frame, zmq::recv_flags::dontwait))
            return;
        // XPUB hands us "\x01topic" for a subscribe and "\x00topic" for an unsubscribe.
        if (frame.size() == 0 || frame.data<char>()[0] != 1)
            continue;
        std::string topic(frame.data<char>() + 1, frame.size() - 1);
        kernex::message welcome =
            kernex::make_request("iopub_welcome", {{"subscription", std::move(topic)}}, m_session, "kernel");
        welcome.identities.assign(1, m_topic_prefix + "iopub_welcome");
        send(m_iopub, m_codec.encode(std::move(welcome)));
    }
}

// Empties the signal pipe. Returns whether a SIGINT was among the bytes;
// a SIGTERM leaves through exit_request (exit 0, sockets flushed).
bool test_kernel::drain_signals()
{
    bool interrupted = false;
    char bytes[64];
    for (;;) {
        const auto n = ::read(g_signal_pipe[0], bytes, sizeof bytes);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            return interrupted;
        }
        for (ssize_t i = 0; i < n; ++i) {
            if (bytes[i] == 't')
                throw exit_request{0, 0};
            interrupted = true;
        }
    }
}

void test_kernel::check_parent() const
{
    if (m_parent_pid != 0 && ::getppid() != m_parent_pid) {
        std::cerr << "test kernel: parent " << m_parent_pid << " died, exiting\n";
        throw exit_request{0, 0};
    }
}

long test_kernel::poll_timeout(std::optional<steady::time_point> deadline) const
{
    long timeout = m_parent_pid != 0 ? parent_check_ms : -1;
    if (deadline) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - steady::now()).count();
        const long remaining = left > 0 ? static_cast<long>(left) : 0;
        timeout = timeout < 0 ? remaining : std::min(timeout, remaining);
    }
    return timeout;
}

// Waits inside a cell until the deadline (none: forever), a SIGINT or
// interrupt_request, or (when input_reply is given) an input_reply. Control
// requests and new iopub subscribers are served meanwhile, so a sleeping
// kernel still answers kernel_info and shutdown on control, as ipykernel.
wake test_kernel::wait(std::optional<steady::time_point> deadline, kernex::message* input_reply)
{
    for (;;) {
        zmq::pollitem_t items[4];
        std::size_t count = 0;
        items[count++] = {nullptr, g_signal_pipe[0], ZMQ_POLLIN, 0};
        items[count++] = {m_control.handle(), 0, ZMQ_POLLIN, 0};
        const std::size_t stdin_index = input_reply ? count++ : 0;
        if (input_reply)
            items[stdin_index] = {m_stdin.handle(), 0, ZMQ_POLLIN, 0};
        const std::size_t iopub_index = m_iopub_welcome ? count++ : 0;
        if (m_iopub_welcome)
            items[iopub_index] = {m_iopub.handle(), 0, ZMQ_POLLIN, 0};

        poll_items(items, count, poll_timeout(deadline));
        if (items[0].revents && drain_signals())
            return wake::interrupt;
        if (items[1].revents) {
            if (auto msg = receive(m_control, "control"); msg && handle_control(*msg))
                return wake::interrupt;
        }
        if (input_reply && items[stdin_index].revents) {
            if (auto msg = receive(m_stdin, "stdin"); msg && msg->msg_type() == "input_reply") {
                *input_reply = std::move(*msg);
                return wake::input_reply;
            }
        }
        if (m_iopub_welcome && items[iopub_index].revents)
            accept_subscriptions();
        check_parent();
        if (deadline && steady::now() >= *deadline)
            return wake::deadline;
    }
}

exit_request test_kernel::run()
{
    try {
        for (;;) {
            zmq::pollitem_t items[] = {
                {nullptr, g_signal_pipe[0], ZMQ_POLLIN, 0},
                {m_control.handle(), 0, ZMQ_POLLIN, 0},
                {m_shell.handle(), 0, ZMQ_POLLIN, 0},
                {m_stdin.handle(), 0, ZMQ_POLLIN, 0},
                {m_iopub.handle(), 0, ZMQ_POLLIN, 0},
            };
            poll_items(items, m_iopub_welcome ? 5 : 4, poll_timeout(m_stdin_bind_at));
            if (m_stdin_bind_at && steady::now() >= *m_stdin_bind_at) {
                m_stdin_bind_at.reset();
                bind(m_stdin, m_stdin_endpoint, "stdin");
            }
            if (items[0].revents)
                drain_signals();  // a SIGINT between cells interrupts nothing
            // Control first: an interrupt or shutdown must not queue behind shell.
            if (items[1].revents) {
                if (auto msg = receive(m_control, "control"))
                    handle_control(*msg);
            } else if (items[2].revents) {
                if (auto msg = receive(m_shell, "shell"))
                    handle_shell(*msg);
            }
            if (items[3].revents)
                receive(m_stdin, "stdin");  // a late input_reply: its cell is over
            if (m_iopub_welcome && items[4].revents)
                accept_subscriptions();
            check_parent();
        }
    } catch (const exit_request& e) {
        return e;
    }
}

void test_kernel::handle_shell(const kernex::message& request)
{
    publish_status(request, "busy");
    bool abort_queue = false;
    if (request.msg_type() == "execute_request" && m_abort_next > 0) {
        --m_abort_next;
        reply(m_shell, request, "execute_reply", {{"status", "aborted"}});
    } else if (request.msg_type() == "execute_request")
        abort_queue = execute(request);
    else
        handle_request(m_shell, request);
    // Only what was queued before this idle is aborted: a client that sends
    // its next cell on idle must not find it aborted (the stress soak did).
    auto queued = abort_queue ? take_queued() : std::vector<kernex::message>{};
    publish_status(request, "idle");
    if (abort_queue)
        abort_queued_executes(std::move(queued));
}

// Returns whether the request was an interrupt_request (which a running cell
// must act on).
bool test_kernel::handle_control(const kernex::message& request)
{
    publish_status(request, "busy");
    const bool interrupt = request.msg_type() == "interrupt_request";
    if (interrupt)
        reply(m_control, request, "interrupt_reply", {{"status", "ok"}});
    else
        handle_request(m_control, request);
    publish_status(request, "idle");
    return interrupt;
}

void test_kernel::handle_request(zmq::socket_t& socket, const kernex::message& request)
{
    const std::string& type = request.msg_type();
    const json& content = request.content;
    if (type == "kernel_info_request") {
        reply(socket, request, "kernel_info_reply",
              {{"status", "ok"},
               {"protocol_version", kernex::protocol_version},
               {"implementation", "kernex-test"},
               {"implementation_version", implementation_version},
               {"language_info",
                {{"name", "test"},
                 {"version", implementation_version},
                 {"mimetype", "text/x-kernex-test"},
                 {"file_extension", ".ktest"},
                 {"pygments_lexer", "text"},
                 {"codemirror_mode", "text"}}},
               {"banner", "kernex test kernel: a native kernel that misbehaves on request"},
               {"help_links", json::array()},
               {"debugger", false}});
    } else if (type == "shutdown_request") {
        const json answer = {{"status", "ok"}, {"restart", bool_field(content, "restart", false)}};
        reply(socket, request, "shutdown_reply", answer);
        // ipykernel also tells every iopub subscriber; clients watching only
        // iopub learn of the shutdown that way.
        if (m_shutdown_broadcast) publish(request, "shutdown_reply", answer);
        publish_status(request, "idle");
        throw exit_request{0, 0};
    } else if (type == "is_complete_request") {
        const std::string code = string_field(content, "code");
        if (!code.empty() && code.back() == '\\')
            reply(socket, request, "is_complete_reply", {{"status", "incomplete"}, {"indent", ""}});
        else
            reply(socket, request, "is_complete_reply", {{"status", "complete"}});
    } else if (type == "complete_request") {
        reply(socket, request, "complete_reply", complete(content));
    } else if (type == "inspect_request") {
        reply(socket, request, "inspect_reply", inspect(content));
    } else if (type == "history_request") {
        reply(socket, request, "history_reply", {{"status", "ok"}, {"history", json::array()}});
    } else if (type == "comm_info_request") {
        reply(socket, request, "comm_info_reply", {{"status", "ok"}, {"comms", json::object()}});
    } else {
        // As ipykernel: unknown types (comm messages, execute on control, ...)
        // get no reply.
        std::cerr << "test kernel: ignoring " << type << '\n';
    }
}

// Runs one execute_request. Returns whether it failed with stop_on_error, so
// the caller aborts what is queued behind it.
bool test_kernel::execute(const kernex::message& request)
{
    const json& content = request.content;
    const std::string code = string_field(content, "code");
    cell c{request, bool_field(content, "silent", false), bool_field(content, "allow_stdin", true)};
    const bool stop_on_error = bool_field(content, "stop_on_error", true);
    if (!c.silent) {
        ++m_execution_count;
        publish(request, "execute_input", {{"code", code}, {"execution_count", m_execution_count}});
    }
    // A SIGINT that arrived between cells was meant for a cell that is over.
    drain_signals();
    g_sigint_seen = 0;
    try {
        run_code(c, code);
    } catch (const cell_error& e) {
        publish(request, "error", {{"ename", e.ename}, {"evalue", e.evalue}, {"traceback", e.traceback}});
        reply(m_shell, request, "execute_reply",
              {{"status", "error"},
               {"execution_count", m_execution_count},
               {"ename", e.ename},
               {"evalue", e.evalue},
               {"traceback", e.traceback}});
        return stop_on_error;
    }
    reply(m_shell, request, "execute_reply",
          {{"status", "ok"},
           {"execution_count", m_execution_count},
           {"user_expressions", user_expressions(content)},
           {"payload", json::array()}});
    return false;
}

// The shell requests waiting now, in order.
std::vector<kernex::message> test_kernel::take_queued()
{
    std::vector<kernex::message> queued;
    for (;;) {
        zmq::pollitem_t item{m_shell.handle(), 0, ZMQ_POLLIN, 0};
        if (poll_items(&item, 1, 0) == 0 || !item.revents)
            return queued;
        if (auto msg = receive(m_shell, "shell"))
            queued.push_back(std::move(*msg));
    }
}

// ipykernel's stop_on_error: execute_requests already waiting behind a failed
// cell are answered "aborted" instead of run; other requests are served.
void test_kernel::abort_queued_executes(std::vector<kernex::message> queued)
{
    for (auto& msg : queued) {
        if (msg.msg_type() != "execute_request") {
            handle_shell(msg);
            continue;
        }
        publish_status(msg, "busy");
        reply(m_shell, msg, "execute_reply", {{"status", "aborted"}});
        publish_status(msg, "idle");
    }
}

void test_kernel::run_code(cell& c, std::string_view code)
{
    std::size_t line_number = 0;
    std::size_t first_line = 0;
    std::string pending;
    bool continuing = false;
    auto run_line = [&](std::string_view line) {
        line = trim_left(line);
        if (line.empty() || line.front() == '#')
            return;
        const auto [name, arg] = split_word(line);
        try {
            if (const command* cmd = find_command(name)) {
                (this->*cmd->run)(c, arg);
            } else if (auto value = arithmetic::evaluate(line)) {
                cmd_result(c, std::to_string(*value));
            } else {
                throw cell_error{"UnknownCommand", "unknown command '" + std::string(name) +
                                                       "' (the commands are listed at the top of test_kernel.cpp)"};
            }
        } catch (cell_error& e) {
            e.traceback = json::array({"\x1b[0;36mline " + std::to_string(first_line) + "\x1b[0m: " + std::string(line),
                                       "\x1b[0;31m" + e.ename + "\x1b[0m: " + e.evalue});
            throw;
        }
    };
    std::size_t pos = 0;
    while (pos <= code.size()) {
        auto end = code.find('\n', pos);
        if (end == std::string_view::npos)
            end = code.size();
        std::string_view line = code.substr(pos, end - pos);
        pos = end + 1;
        ++line_number;
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (!continuing)
            first_line = line_number;
        if (!line.empty() && line.back() == '\\') {
            line.remove_suffix(1);
            pending.append(line).push_back('\n');
            continuing = true;
            continue;
        }
        if (continuing) {
            pending.append(line);
            run_line(pending);
            pending.clear();
            continuing = false;
        } else {
            run_line(line);
        }
    }
    if (continuing)
        run_line(pending);
}

json test_kernel::user_expressions(const json& content) const
{
    json results = json::object();
    auto it = content.find("user_expressions");
    if (it == content.end() || !it->is_object())
        return results;
    for (const auto& [name, expression] : it->items()) {
        const std::string key = expression.is_string() ? expression.get<std::string>() : std::string();
        if (auto value = m_state.find(key); value != m_state.end())
            results[name] = {{"status", "ok"}, {"data", {{"text/plain", value->second}}}, {"metadata", json::object()}};
        else
            results[name] = {{"status", "error"}, {"ename", "KeyError"}, {"evalue", key}, {"traceback", json::array()}};
    }
    return results;
}

json test_kernel::complete(const json& content) const
{
    const std::string code = string_field(content, "code");
    const std::int64_t length = count_code_points(code);
    const std::int64_t cursor = std::clamp<std::int64_t>(int_field(content, "cursor_pos").value_or(length), 0, length);
    const std::string_view before = std::string_view(code).substr(0, byte_offset(code, cursor));
    const auto newline = before.rfind('\n');
    const std::string_view word = trim_left(newline == std::string_view::npos ? before : before.substr(newline + 1));
    json matches = json::array();
    std::int64_t start = cursor;
    // Only the command word is completed; arguments are free text.
    if (word.find(' ') == std::string_view::npos) {
        for (const command& cmd : commands())
            if (cmd.name.starts_with(word))
                matches.push_back(cmd.name);
        start = cursor - count_code_points(word);
    }
    return {{"status", "ok"},
            {"matches", std::move(matches)},
            {"cursor_start", start},
            {"cursor_end", cursor},
            {"metadata", json::object()}};
}

json test_kernel::inspect(const json& content) const
{
    const std::string code = string_field(content, "code");
    const std::int64_t cursor = int_field(content, "cursor_pos").value_or(count_code_points(code));
    const std::size_t at = byte_offset(code, cursor);
    const auto line_start = at == 0 ? std::string_view::npos : code.rfind('\n', at - 1);
    const std::size_t begin = line_start == std::string_view::npos ? 0 : line_start + 1;
    const std::string_view line = trim_left(std::string_view(code).substr(begin, code.find('\n', begin) - begin));
    const command* cmd = find_command(split_word(line).first);
    if (!cmd)
        return {{"status", "ok"}, {"found", false}, {"data", json::object()}, {"metadata", json::object()}};
    return {{"status", "ok"},
            {"found", true},
            {"data", {{"text/plain", std::string(cmd->usage) + "\n    " + std::string(cmd->help)}}},
            {"metadata", json::object()}};
}

// ---------------------------------------------------------------------------
// Commands.

void test_kernel::cmd_print(cell& c, std::string_view arg)
{
    stream(c, "stdout", std::string(arg) + '\n');
}

void test_kernel::cmd_eprint(cell& c, std::string_view arg)
{
    stream(c, "stderr", std::string(arg) + '\n');
}

void test_kernel::cmd_write(cell& c, std::string_view arg)
{
    stream(c, "stdout", std::string(arg));
}

void test_kernel::cmd_result(cell& c, std::string_view arg)
{
    // As ipykernel: a silent execution has no execute_result.
    if (c.silent)
        return;
    publish(c.request, "execute_result",
            {{"execution_count", m_execution_count},
             {"data", {{"text/plain", arg}}},
             {"metadata", json::object()}});
}

void test_kernel::cmd_display(cell& c, std::string_view arg)
{
    const auto [id, text] = split_word(arg);
    publish(c.request, "display_data",
            {{"data", {{"text/plain", text}}}, {"metadata", json::object()}, {"transient", {{"display_id", id}}}});
}

void test_kernel::cmd_display_png(cell& c, std::string_view)
{
    publish(c.request, "display_data",
            {{"data", {{"image/png", tiny_png_base64}, {"text/plain", "<4x4 test image>"}}},
             {"metadata", json::object()},
             {"transient", json::object()}});
}

void test_kernel::cmd_display_html(cell& c, std::string_view arg)
{
    publish(c.request, "display_data",
            {{"data", {{"text/html", arg}}}, {"metadata", json::object()}, {"transient", json::object()}});
}

void test_kernel::cmd_update_display(cell& c, std::string_view arg)
{
    const auto [id, text] = split_word(arg);
    if (id.empty())
        throw cell_error{"ValueError", "update_display: expected a display id"};
    publish(c.request, "update_display_data",
            {{"data", {{"text/plain", text}}}, {"metadata", json::object()}, {"transient", {{"display_id", id}}}});
}

void test_kernel::cmd_clear(cell& c, std::string_view arg)
{
    publish(c.request, "clear_output", {{"wait", arg == "wait"}});
}

void test_kernel::cmd_sleep(cell&, std::string_view arg)
{
    const auto ms = parse_count("sleep", arg);
    const auto deadline = steady::now() + std::chrono::milliseconds(ms);
    if (wait(deadline, nullptr) == wake::interrupt)
        throw cell_error{"KeyboardInterrupt", ""};
}

void test_kernel::cmd_hang(cell&, std::string_view)
{
    // Ignored for real (not just unhandled), so a SIGINT to the whole process
    // group cannot end the cell: the client has to escalate.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGINT, &ignore, nullptr);
    for (;;) {
        zmq::pollitem_t item{nullptr, g_signal_pipe[0], ZMQ_POLLIN, 0};
        poll_items(&item, 1, poll_timeout(std::nullopt));
        if (item.revents)
            drain_signals();  // leaves on SIGTERM; an earlier SIGINT's byte is ignored
        check_parent();
    }
}

void test_kernel::cmd_crash(cell&, std::string_view arg)
{
    static const std::pair<std::string_view, int> signals[] = {
        {"SIGKILL", SIGKILL}, {"SIGSEGV", SIGSEGV}, {"SIGABRT", SIGABRT},
        {"SIGTERM", SIGTERM}, {"SIGBUS", SIGBUS},   {"SIGINT", SIGINT},
    };
    if (arg.empty())
        throw exit_request{3, 0};
    for (const auto& [name, number] : signals)
        if (arg == name)
            throw exit_request{0, number};
    throw exit_request{static_cast<int>(parse_count("crash", arg) & 0xff), 0};
}

void test_kernel::cmd_input(cell& c, std::string_view arg)
{
    ask(c, arg, false);
}

void test_kernel::cmd_password(cell& c, std::string_view arg)
{
    ask(c, arg, true);
}

void test_kernel::ask(cell& c, std::string_view prompt, bool password)
{
    if (!c.allow_stdin)
        throw cell_error{"StdinNotImplementedError",
                         "input was called, but this frontend does not support input requests"};
    // The request's identities are the client's shell identity, which
    // jupyter_client (and kernex) also give their stdin socket.
    reply(m_stdin, c.request, "input_request", {{"prompt", prompt}, {"password", password}});
    kernex::message answer;
    if (wait(std::nullopt, &answer) == wake::interrupt)
        throw cell_error{"KeyboardInterrupt", ""};
    stream(c, "stdout", "got: " + string_field(answer.content, "value") + "\n");
}

void test_kernel::cmd_error(cell&, std::string_view arg)
{
    const auto [name, value] = split_word(arg);
    throw cell_error{name.empty() ? "Error" : std::string(name), std::string(value)};
}

void test_kernel::cmd_set(cell&, std::string_view arg)
{
    const auto [key, value] = split_word(arg);
    if (key.empty())
        throw cell_error{"ValueError", "set: expected a key"};
    m_state.insert_or_assign(std::string(key), std::string(value));
}

void test_kernel::cmd_get(cell& c, std::string_view arg)
{
    auto it = m_state.find(arg);
    if (it == m_state.end())
        throw cell_error{"KeyError", std::string(arg)};
    stream(c, "stdout", it->second + '\n');
}

void test_kernel::cmd_forge(cell& c, std::string_view)
{
    // Copied first: the forged messages below must not become the replay.
    const std::vector<std::string> replay = m_last_iopub;
    auto signature_of = [](std::vector<std::string>& frames) -> std::string& {
        std::size_t i = 0;
        while (frames[i] != kernex::delimiter)
            ++i;
        return frames[i + 1];
    };

    auto forged = encode_iopub(c.request, "stream", {{"name", "stdout"}, {"text", "forged\n"}});
    std::string& signature = signature_of(forged);
    // Still well-formed lower-case hex of the right length, so only the HMAC
    // comparison can catch it.
    if (signature.empty())
        signature.assign(64, '0');
    else
        signature[0] = signature[0] == '0' ? '1' : '0';
    send(m_iopub, forged);

    auto unsigned_message = encode_iopub(c.request, "stream", {{"name", "stdout"}, {"text", "unsigned\n"}});
    signature_of(unsigned_message).clear();
    send(m_iopub, unsigned_message);

    if (!replay.empty())
        send(m_iopub, replay);
}

void test_kernel::cmd_flood(cell& c, std::string_view arg)
{
    const auto n = parse_count("flood", arg);
    for (std::uint64_t i = 1; i <= n; ++i) {
        if (g_sigint_seen)
            throw cell_error{"KeyboardInterrupt", ""};
        stream(c, "stdout", "line " + std::to_string(i) + '\n');
    }
}

void test_kernel::cmd_lines(cell& c, std::string_view arg)
{
    const auto n = parse_count("lines", arg);
    std::string batch;
    batch.reserve(stream_batch_bytes);
    // Cheap per line, so that a client reading the stream is what a
    // benchmark of it measures.
    char line[32] = "line ";
    for (std::uint64_t i = 1; i <= n; ++i) {
        char* end = std::to_chars(line + 5, line + sizeof line - 1, i).ptr;
        *end++ = '\n';
        const auto size = static_cast<std::size_t>(end - line);
        if (!batch.empty() && batch.size() + size > stream_batch_bytes) {
            if (g_sigint_seen)
                throw cell_error{"KeyboardInterrupt", ""};
            stream(c, "stdout", std::move(batch));
            batch.clear();
            batch.reserve(stream_batch_bytes);
        }
        batch.append(line, size);
    }
    if (!batch.empty())
        stream(c, "stdout", std::move(batch));
}

void test_kernel::cmd_big(cell& c, std::string_view arg)
{
    stream(c, "stdout", std::string(parse_count("big", arg, true), 'x'));
}

void test_kernel::cmd_noreply(cell&, std::string_view)
{
    wait(std::nullopt, nullptr);  // only an interrupt returns from a wait without deadline
    throw cell_error{"KeyboardInterrupt", ""};
}

void test_kernel::cmd_pid(cell& c, std::string_view)
{
    stream(c, "stdout", std::to_string(::getpid()) + '\n');
}

void test_kernel::cmd_date(cell&, std::string_view arg)
{
    m_date = std::string(arg);
}

void test_kernel::cmd_abort(cell&, std::string_view arg)
{
    m_abort_next = parse_count("abort", arg);
}

// ---------------------------------------------------------------------------

[[noreturn]] void usage_error(const std::string& why)
{
    std::cerr << "test kernel: " << why << "\n"
              << "usage: kernex-test-kernel -f CONNECTION_FILE [--exit-at-start CODE] [--slow-start MS]"
                 " [--late-stdin MS] [--no-heartbeat] [--iopub-welcome] [--no-shutdown-broadcast]\n";
    std::exit(2);
}

long parse_number(const std::string& flag, const char* text)
{
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0)
        usage_error(flag + " expects a non-negative integer, got '" + text + "'");
    return value;
}

bool env_flag(const char* name)
{
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0' && std::string_view(value) != "0";
}

options parse_options(int argc, char** argv)
{
    options opts;
    if (const char* code = std::getenv("KERNEX_TEST_KERNEL_EXIT_AT_START"); code && *code)
        opts.exit_at_start = static_cast<int>(parse_number("KERNEX_TEST_KERNEL_EXIT_AT_START", code));
    if (const char* ms = std::getenv("KERNEX_TEST_KERNEL_SLOW_START"); ms && *ms)
        opts.slow_start_ms = parse_number("KERNEX_TEST_KERNEL_SLOW_START", ms);
    if (const char* ms = std::getenv("KERNEX_TEST_KERNEL_LATE_STDIN"); ms && *ms)
        opts.late_stdin_ms = parse_number("KERNEX_TEST_KERNEL_LATE_STDIN", ms);
    opts.heartbeat = !env_flag("KERNEX_TEST_KERNEL_NO_HEARTBEAT");
    opts.iopub_welcome = env_flag("KERNEX_TEST_KERNEL_IOPUB_WELCOME");
    opts.shutdown_broadcast = !env_flag("KERNEX_TEST_KERNEL_NO_SHUTDOWN_BROADCAST");

    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc)
                usage_error(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "-f" || arg == "--connection-file")
            opts.connection_file = value();
        else if (arg.starts_with("--connection-file="))
            opts.connection_file = arg.substr(std::strlen("--connection-file="));
        else if (arg == "--exit-at-start")
            opts.exit_at_start = static_cast<int>(parse_number(arg, value()));
        else if (arg == "--slow-start")
            opts.slow_start_ms = parse_number(arg, value());
        else if (arg == "--late-stdin")
            opts.late_stdin_ms = parse_number(arg, value());
        else if (arg == "--no-heartbeat")
            opts.heartbeat = false;
        else if (arg == "--iopub-welcome")
            opts.iopub_welcome = true;
        else if (arg == "--no-shutdown-broadcast")
            opts.shutdown_broadcast = false;
        else
            usage_error("unknown argument '" + arg + "'");
    }
    return opts;
}

}  // namespace

int main(int argc, char** argv)
{
    const options opts = parse_options(argc, argv);
    if (opts.exit_at_start) {
        std::cerr << "test kernel: failing at start on purpose" << std::endl;
        return *opts.exit_at_start;
    }
    if (opts.connection_file.empty())
        usage_error("-f CONNECTION_FILE is required");
    if (opts.slow_start_ms > 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(opts.slow_start_ms));

    kernex::connection_info info;
    try {
        info = kernex::read_connection_file(opts.connection_file);
    } catch (const std::exception& e) {
        std::cerr << "test kernel: " << e.what() << '\n';
        return 2;
    }

    exit_request how;
    try {
        install_signal_handlers();
        test_kernel kernel(opts, info);
        how = kernel.run();
    } catch (const std::exception& e) {
        // Mostly bind failures (EADDRINUSE): exit 1 so a manager retries with new ports.
        std::cerr << "test kernel: " << e.what() << std::endl;
        return 1;
    }
    // The kernel is destroyed here, so everything sent before a crash has
    // been flushed (within the linger time) before the process dies.
    if (how.signal != 0) {
        std::signal(how.signal, SIG_DFL);
        std::raise(how.signal);
    }
    return how.code;
}
