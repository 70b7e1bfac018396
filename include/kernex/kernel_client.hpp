// kernel_client: talks to one Jupyter kernel over a transport. execute()
// sends code and returns an execution value (status, outputs in arrival
// order, reply, elapsed time); outputs can also be streamed to a handler as
// they arrive. Comms (widgets and other kernel<->client channels) are sent
// with comm_open/comm_msg/comm_close and received through on_comm or
// next_comm. Every call has one deadline for the whole operation and
// returns when the kernel dies. Single-threaded: use a client from one
// thread at a time.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernex/connection.hpp"
#include "kernex/message.hpp"
#include "kernex/transport.hpp"

namespace kernex {

// The outputs a cell can produce, as they appear on iopub.
namespace outputs {
struct stream {
    std::string name;  // "stdout" or "stderr"
    std::string text;
};
struct display_data {
    json data;
    json metadata;
    json transient;    // may hold display_id
};
struct update_display_data {
    json data;
    json metadata;
    std::string display_id;
};
struct execute_result {
    int execution_count = 0;
    json data;
    json metadata;
};
struct error {
    std::string ename;
    std::string evalue;
    std::vector<std::string> traceback;
};
struct clear_output {
    bool wait = false;
};
}  // namespace outputs

using output = std::variant<outputs::stream, outputs::display_data, outputs::update_display_data,
                            outputs::execute_result, outputs::error, outputs::clear_output>;

// A comm message from the kernel (on iopub): what ipywidgets and other comm
// targets send. The kernel opens comms (comm_open with a target_name), sends
// on them (comm_msg) and closes them (comm_close), in answer to a cell or to
// a comm message of ours.
struct comm_message {
    std::string msg_type;          // "comm_open", "comm_msg" or "comm_close"
    std::string comm_id;
    std::string target_name;       // comm_open only
    json data = json::object();
    json metadata = json::object();
    std::vector<std::string> buffers;  // binary buffers, as sent
    std::string parent_msg_id;     // the request it answers: an execute_request, a comm_msg of ours...

    // {"msg_type", "comm_id", "target_name" (comm_open), "data", "metadata",
    // "buffers" (base64, when there are any)}: how kernex run --json records it.
    json to_json() const;
};
// What a comm message weighs against execute_options::max_output_bytes: its
// ids, its data and metadata as JSON text, and its buffers.
std::size_t output_bytes(const comm_message& c);

enum class execution_status { ok, error, aborted, timeout, kernel_died };
std::string_view to_string(execution_status s) noexcept;

// What an output weighs against execute_options::max_output_bytes: its text,
// traceback, or MIME data (strings by size, other values 64 bytes).
std::size_t output_bytes(const output& o);

struct execution {
    execution_status status = execution_status::ok;
    int execution_count = 0;
    std::vector<output> outputs;       // in arrival order
    json reply = json::object();       // execute_reply content (empty when none arrived)
    std::chrono::nanoseconds elapsed{};
    bool restarted = false;            // the kernel stayed busy after a timeout and was restarted
    bool input_unanswered = false;     // the kernel asked for input and no handler was set
    // The cell ran in another kernel process than the previous cell of this
    // client (the kernel was restarted in between: automatically after it
    // died, after a timeout, or by whoever runs a kernel kernex did not
    // start), or the kernel was replaced while it ran: what earlier cells
    // defined is gone. note says so.
    bool state_lost = false;
    // The execute_reply came but the iopub idle status did not within
    // idle_wait: a message was lost on iopub (one above max_message_bytes,
    // or the kernel's queue was full), so outputs may be missing. note says so.
    bool outputs_lost = false;
    // execute_options::stop was requested while the cell still ran: it was no
    // longer waited for (status aborted); the kernel may still be running it.
    bool abandoned = false;
    // Bytes of outputs beyond max_output_bytes, not kept; when non-zero the
    // last output is a stderr stream "[kernex: N bytes of output dropped ...]".
    std::uint64_t dropped_output_bytes = 0;
    // The comm messages the cell sent (their parent is this execute_request),
    // in arrival order; they count against max_output_bytes like outputs.
    std::vector<comm_message> comms;
    std::string note;                  // why, for timeout / kernel_died / restarted / state_lost / abandoned
    // The execute_request's msg_id: the parent_msg_id of the cell's comm messages.
    std::string msg_id;
    // The header dates, as the kernel wrote them, of the cell's iopub busy
    // status, execute_input, execute_reply and iopub idle status ("" when
    // none came): what nbclient records in a notebook cell's metadata.execution.
    struct message_dates {
        std::string busy, execute_input, reply, idle;
    } dates;

    // All stream text, in order (stdout and stderr interleaved as they arrived).
    std::string stream_text() const;
    // The text/plain of the execute_result, if any.
    std::optional<std::string> result_text() const;
    // The error output, if any.
    const outputs::error* error() const;
};

struct input_request {
    std::string prompt;
    bool password = false;
};

struct execute_options {
    bool silent = false;
    bool store_history = true;
    json user_expressions = json::object();
    bool allow_stdin = true;
    bool stop_on_error = true;
    // One deadline for the whole cell; nullopt waits as long as the kernel lives.
    std::optional<std::chrono::milliseconds> timeout{};
    // After a timeout: how long to wait for the interrupted cell to end
    // before the kernel is restarted.
    std::chrono::milliseconds interrupt_grace{3000};
    std::function<void(const output&)> on_output{};
    // After the execute_reply: how long iopub may stay silent before the
    // iopub idle status is taken for lost and the cell ends (with a note
    // that outputs may be missing) instead of waiting for its deadline.
    std::chrono::milliseconds idle_wait{2000};
    // An "aborted" reply to a cell that had nothing of ours queued before it
    // (ipykernel aborts requests arriving just after a failed, interrupted
    // or timed-out cell) is sent again, this many times (20, 40, 80 ms
    // apart, within the timeout), before the cell is reported aborted.
    int aborted_retries = 3;
    // Bytes of output kept in execution::outputs (stream text and MIME data
    // sizes); later outputs still reach on_output but are not kept, and the
    // result says how many bytes were dropped (dropped_output_bytes, and a
    // final stderr notice among the outputs, which on_output does not see: it
    // saw everything). 0 keeps nothing (for callers that use on_output only). Bounds memory per cell; with the transport's
    // message-size and queue bounds, what a kernel can make us hold.
    std::size_t max_output_bytes = std::size_t{256} << 20;
    // Answers input_request; without it the kernel gets "" and the result says so.
    std::function<std::string(const input_request&)> on_input{};
    // Every comm message that arrives while the cell runs (this cell's, and
    // those answering other requests, e.g. a widget's own traffic). Without
    // it they are kept for next_comm() (this cell's are in execution::comms
    // either way). It may call comm_msg/comm_close (they only send).
    std::function<void(const comm_message&)> on_comm{};
    // When stop is requested (from any thread: a signal's, a broken pipe's)
    // the cell is no longer waited for: execute returns within ~100 ms with
    // status aborted and abandoned set. Nothing is sent to the kernel:
    // interrupt it first if the code should stop too.
    std::stop_token stop{};
    // A cell silent this long (no message at all) is probed with a
    // kernel_info_request on control, again after each such silence: a reply
    // from another kernel session, or an iopub "starting" status from one,
    // means the kernel was replaced under us (restarted on the same ports by
    // whoever runs it) and the cell ends kernel_died, state_lost. 0: no probe.
    std::chrono::milliseconds probe_after{2000};
};

// What a kernel_client needs from whoever runs the kernel (kernel_manager):
// interrupting per the kernelspec, restarting, and knowing when it died.
class kernel_control {
public:
    virtual ~kernel_control() = default;
    virtual void interrupt() = 0;
    // Restarts the kernel process (same connection), noexcept-ish: throws kernex::error on failure.
    virtual void restart_kernel() = 0;
    // A new fd (the caller owns and closes it) that becomes readable once the
    // current kernel process is dead; -1 when there is no process to watch.
    virtual int watch_fd() = 0;
    // Increments every time a new kernel process replaces the old one.
    virtual std::uint64_t generation() = 0;
    // Called before each request: returns once the kernel is usable, or
    // dead for good (e.g. waits for an automatic restart in progress).
    virtual void before_request() {}
};

struct client_options {
    std::string session{};             // default: a new id
    std::string username = "kernex";
    // Heartbeat for kernels kernex did not launch (0 disables).
    std::chrono::milliseconds heartbeat_period{1000};
    codec_options codec{};
    int iopub_queue_messages = 1000;  // see zmq_transport_options
};

class kernel_client {
public:
    // A client over an existing transport.
    kernel_client(std::unique_ptr<transport> t, std::string session, std::string username = "kernex");
    // Connects to a kernel kernex did not start, from its connection file.
    // Throws kernex::error when the file is missing or malformed.
    static kernel_client from_connection_file(const std::filesystem::path& path, client_options options = {});
    static kernel_client from_connection_info(const connection_info& info, client_options options = {});

    kernel_client(kernel_client&&) noexcept;
    kernel_client& operator=(kernel_client&&) noexcept;
    ~kernel_client();

    // Runs code; see execution. Throws only on transport failures and bad arguments.
    execution execute(const std::string& code, const execute_options& options = {});

    // Waits until the kernel answers kernel_info and iopub is proven
    // subscribed. Throws kernex::error(timeout) or (kernel_died).
    json wait_for_ready(std::chrono::milliseconds timeout);

    // Request/reply helpers: each returns the reply content; throws
    // kernex::error(timeout) or (kernel_died).
    json kernel_info(std::chrono::milliseconds timeout = std::chrono::seconds(10));
    json complete(const std::string& code, int cursor_pos, std::chrono::milliseconds timeout = std::chrono::seconds(10));
    json inspect(const std::string& code, int cursor_pos, int detail_level = 0,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10));
    json is_complete(const std::string& code, std::chrono::milliseconds timeout = std::chrono::seconds(10));
    json history(json request = {{"hist_access_type", "tail"}, {"n", 10}, {"output", false}, {"raw", true}},
                 std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // comm_info_request: the kernel's open comms ({"comms": {id: {"target_name": ...}}}),
    // all of them or those of one target.
    json comm_info(std::chrono::milliseconds timeout = std::chrono::seconds(10));
    json comm_info(const std::string& target_name, std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // Comms from this side (a frontend's role). Each sends one message on
    // shell and returns without waiting: the protocol has no reply to them;
    // what the kernel answers comes on iopub (on_comm, next_comm) with the
    // returned msg_id as its parent. comm_open returns the comm_id (a new
    // one when comm_id is empty); a kernel with no such target answers with
    // a comm_close (ipykernel) or nothing. comm_msg and comm_close return
    // the request's msg_id. Throw kernex::error when the transport cannot send.
    std::string comm_open(const std::string& target_name, json data = json::object(), json metadata = json::object(),
                          std::vector<std::string> buffers = {}, std::string comm_id = {});
    std::string comm_msg(const std::string& comm_id, json data, json metadata = json::object(),
                         std::vector<std::string> buffers = {});
    std::string comm_close(const std::string& comm_id, json data = json::object(), json metadata = json::object());
    // The next comm message from the kernel: the oldest one that arrived
    // while no on_comm took it (during execute without on_comm, or while
    // waiting for a reply), else the next to arrive on iopub before timeout.
    // nullopt on timeout. At most 1,000 are kept; older ones are dropped
    // (dropped_comms counts them). Throws kernex::error(kernel_died) when
    // the kernel dies while waiting.
    std::optional<comm_message> next_comm(std::chrono::milliseconds timeout);
    std::uint64_t dropped_comms() const noexcept;
    // shutdown_request on control; returns the reply (or throws on timeout).
    json shutdown(bool restart = false, std::chrono::milliseconds timeout = std::chrono::seconds(5));
    // interrupt_request on control (interrupt_mode message).
    json interrupt_request(std::chrono::milliseconds timeout = std::chrono::seconds(5));

    // Sends a request on a channel and waits for its reply (any msg_type).
    message request(channel ch, const std::string& msg_type, json content, std::chrono::milliseconds timeout);

    void set_control(kernel_control* control) noexcept;
    const std::string& session() const noexcept;
    transport& get_transport() noexcept;
    // Messages dropped because they failed verification, by reason.
    reject_counters rejected() const;

private:
    struct impl;
    std::unique_ptr<impl> m_impl;
};

}  // namespace kernex
