// kernel_client: the request/reply logic of the Jupyter protocol, above any
// transport. A request is done when its reply has arrived (and, for
// execute, the iopub "idle" status for it too); only messages whose parent
// is the request count. Every wait has one deadline and ends when the
// transport reports the kernel dead.
#include "kernex/kernel_client.hpp"

#include <unistd.h>

#include <algorithm>
#include <deque>
#include <thread>
#include <unordered_set>

#include "kernex/error.hpp"
#include "kernex/output_files.hpp"

namespace kernex {

using steady = std::chrono::steady_clock;

std::size_t output_bytes(const output& o) {
    return std::visit(
        [](const auto& v) -> std::size_t {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, outputs::stream>) return v.text.size();
            else if constexpr (std::is_same_v<T, outputs::error>) {
                std::size_t n = v.ename.size() + v.evalue.size();
                for (const auto& line : v.traceback) n += line.size();
                return n;
            } else if constexpr (std::is_same_v<T, outputs::clear_output>) return 0;
            else {
                std::size_t n = 0;
                for (const auto& [mime, value] : v.data.items())
                    n += mime.size() + (value.is_string() ? value.template get_ref<const std::string&>().size() : 64);
                return n;
            }
        },
        o);
}

std::string_view to_string(execution_status s) noexcept {
    switch (s) {
    case execution_status::ok: return "ok";
    case execution_status::error: return "error";
    case execution_status::aborted: return "aborted";
    case execution_status::timeout: return "timeout";
    case execution_status::kernel_died: return "kernel_died";
    }
    return "unknown";
}

std::string execution::stream_text() const {
    std::string text;
    for (const auto& o : outputs)
        if (auto* s = std::get_if<outputs::stream>(&o)) text += s->text;
    return text;
}

std::optional<std::string> execution::result_text() const {
    for (const auto& o : outputs)
        if (auto* r = std::get_if<outputs::execute_result>(&o))
            if (r->data.contains("text/plain") && r->data["text/plain"].is_string())
                return r->data["text/plain"].get<std::string>();
    return std::nullopt;
}

const outputs::error* execution::error() const {
    for (const auto& o : outputs)
        if (auto* e = std::get_if<outputs::error>(&o)) return e;
    return nullptr;
}

std::size_t output_bytes(const comm_message& c) {
    std::size_t n = c.comm_id.size() + c.target_name.size() + c.data.dump().size() + c.metadata.dump().size();
    for (const auto& b : c.buffers) n += b.size();
    return n;
}

json comm_message::to_json() const {
    json j{{"msg_type", msg_type}, {"comm_id", comm_id}};
    if (msg_type == "comm_open") j["target_name"] = target_name;
    j["data"] = data;
    j["metadata"] = metadata;
    if (!buffers.empty()) {
        j["buffers"] = json::array();
        for (const auto& b : buffers) j["buffers"].push_back(base64_encode(b));
    }
    return j;
}

namespace {

// Has the transport watch a kernel's watch fd for the length of one request.
class watching {
public:
    watching(transport& t, int fd) : m_transport(t) { m_transport.watch_death_fd(fd); }
    ~watching() { m_transport.watch_death_fd(-1); }
    watching(const watching&) = delete;
    watching& operator=(const watching&) = delete;

private:
    transport& m_transport;
};

std::string str(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

json obj(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_object() ? *it : json::object();
}

// The same, moving the value out: a peer's 100 MB text is not copied again.
std::string take_str(json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? std::move(it->get_ref<std::string&>()) : std::string{};
}

json take_obj(json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_object() ? std::move(*it) : json::object();
}

// Turns an iopub message into an output, moving its content out; nullopt for
// status, execute_input and others.
std::optional<output> to_output(message& m) {
    auto& c = m.content;
    const auto& type = m.msg_type();
    if (type == "stream") return outputs::stream{str(c, "name"), take_str(c, "text")};
    if (type == "display_data")
        return outputs::display_data{take_obj(c, "data"), take_obj(c, "metadata"), take_obj(c, "transient")};
    if (type == "update_display_data")
        return outputs::update_display_data{take_obj(c, "data"), take_obj(c, "metadata"),
                                            str(obj(c, "transient"), "display_id")};
    if (type == "execute_result") {
        int count = c.contains("execution_count") && c["execution_count"].is_number_integer()
                        ? c["execution_count"].get<int>()
                        : 0;
        return outputs::execute_result{count, take_obj(c, "data"), take_obj(c, "metadata")};
    }
    if (type == "error") {
        outputs::error e{str(c, "ename"), str(c, "evalue"), {}};
        if (auto it = c.find("traceback"); it != c.end() && it->is_array())
            for (const auto& line : *it)
                if (line.is_string()) e.traceback.push_back(line.get<std::string>());
        return e;
    }
    if (type == "clear_output") return outputs::clear_output{c.value("wait", false)};
    return std::nullopt;
}

// A comm_open, comm_msg or comm_close from iopub, moving its content out;
// nullopt for any other message (or one without a comm_id).
std::optional<comm_message> to_comm(message& m) {
    const auto& type = m.msg_type();
    if (type != "comm_open" && type != "comm_msg" && type != "comm_close") return std::nullopt;
    auto& c = m.content;
    comm_message comm{type, str(c, "comm_id"), str(c, "target_name"), take_obj(c, "data"),
                      std::move(m.metadata), std::move(m.buffers), m.parent_header.msg_id};
    if (comm.comm_id.empty()) return std::nullopt;
    if (!comm.metadata.is_object()) comm.metadata = json::object();
    return comm;
}

constexpr std::size_t max_kept_comms = 1000;

steady::time_point deadline_after(std::optional<std::chrono::milliseconds> timeout) {
    return timeout ? steady::now() + *timeout : steady::time_point::max();
}

std::string seconds_text(std::chrono::milliseconds ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g s", static_cast<double>(ms.count()) / 1000.0);
    return buf;
}

}  // namespace

struct kernel_client::impl {
    std::unique_ptr<transport> t;
    std::string session;
    std::string username;
    kernel_control* control = nullptr;
    std::uint64_t ready_generation = 0;
    std::size_t kept_bytes = 0;  // of the current execute's outputs
    bool iopub_reconnected = false;  // since the last proof of the subscription
    // The kernel process we talk to, by the session ids in the headers of its
    // replies and of its iopub messages (a kernel makes a new one each time
    // it starts): another session means the kernel was replaced under us.
    std::string reply_session, iopub_session;
    // After a restart: the replaced process's session. Its late iopub
    // messages (ipykernel broadcasts its shutdown_reply and statuses there)
    // prove nothing about the new process's subscription: through a Jupyter
    // Server they arrive before the server's own iopub socket is subscribed
    // to the new kernel, and a cell sent then loses its outputs.
    std::string replaced_session;
    std::uint64_t last_cell_generation = 0;
    bool ran_a_cell = false;
    // Comm messages no on_comm took, for next_comm (bounded: oldest dropped).
    std::deque<comm_message> comms;
    std::uint64_t dropped_comms = 0;
    // The current kernel process's watch fd, kept from one request to the
    // next (a dup and a close per request were two syscalls of every cell)
    // and fetched again once a new process replaced it.
    int watch_fd = -1;
    std::uint64_t watch_generation = 0;

    impl() = default;
    impl(const impl&) = delete;
    impl& operator=(const impl&) = delete;
    ~impl() { drop_watch_fd(); }

    void drop_watch_fd() noexcept {
        if (watch_fd >= 0) ::close(watch_fd);
        watch_fd = -1;
    }

    // The fd that becomes readable when the kernel process dies; -1 when
    // there is none to watch.
    int current_watch_fd() {
        if (!control) return -1;
        // Read before the fd is asked for: a process started in between
        // makes the next request ask again, and an old process's fd is never
        // kept for a new one.
        const auto generation = control->generation();
        if (watch_fd >= 0 && generation == watch_generation) return watch_fd;
        drop_watch_fd();
        watch_fd = control->watch_fd();
        watch_generation = generation;
        return watch_fd;
    }

    void keep_comm(comm_message&& c) {
        if (comms.size() >= max_kept_comms) {
            comms.pop_front();
            ++dropped_comms;
        }
        comms.push_back(std::move(c));
    }

    // An iopub comm message met while waiting for something else is kept
    // (its content moved out: the caller is done with it).
    void keep_if_comm(incoming& in) {
        if (in.channel != channel::iopub) return;
        if (auto c = to_comm(in.message)) keep_comm(std::move(*c));
    }

    message send(channel ch, const std::string& type, json content) {
        auto msg = make_request(type, std::move(content), session, username);
        t->send(ch, msg);
        return msg;
    }

    void forget_sessions() {
        if (!iopub_session.empty() || !reply_session.empty())
            replaced_session = iopub_session.empty() ? reply_session : iopub_session;
        reply_session.clear();
        iopub_session.clear();
    }

    // A kernel replaced since the last request (restarted by the restarter
    // thread) may not have our iopub subscription yet: prove it first.
    void ensure_ready(steady::time_point deadline) {
        if (control) control->before_request();
        const bool replaced = control && control->generation() != ready_generation;
        if (replaced) forget_sessions();  // the new process has its own
        if (!replaced && !iopub_reconnected) return;
        iopub_reconnected = false;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
        wait_ready(std::min(left, std::chrono::milliseconds(60'000)));
    }

    // Why a kernel was not ready in time, with what the rejection counters
    // know: a wrong key shows as replies that fail their signature check
    // (kernels drop our requests for the same reason, so often nothing at
    // all arrives, which the message says too).
    error not_ready(std::chrono::milliseconds timeout, bool replied, std::uint64_t rejected_before) const {
        std::string what = "the kernel was not ready within " + seconds_text(timeout);
        const auto bad = t->rejected()[reject_reason::bad_signature] - rejected_before;
        if (bad > 0)
            return error(errc::timeout, what + ": " + std::to_string(bad) +
                                            " messages arrived but failed the signature check, so the key (or "
                                            "signature_scheme) in the connection file is not the kernel's; use "
                                            "the connection file the kernel was started with");
        if (replied) return error(errc::timeout, what + " (no message arrived on iopub)");
        if (!control)
            return error(errc::timeout,
                         what + ": no reply arrived (a kernel also drops requests signed with another key "
                                "without a word: check that the connection file is the running kernel's, "
                                "and that the kernel is not busy)");
        return error(errc::timeout, what);
    }

    json wait_ready(std::chrono::milliseconds timeout) {
        auto deadline = steady::now() + timeout;
        // A new kernel process (kernel_manager::restart waits here for it):
        // the sessions it signs with are learned anew. Kept, the old ones
        // would make the new process's own late "starting" status look like
        // a kernel replaced under the next cell.
        if (control && control->generation() != ready_generation) forget_sessions();
        if (control) ready_generation = control->generation();
        watching watch(*t, current_watch_fd());
        std::unordered_set<std::string> asked;
        auto ask = [&] { asked.insert(send(channel::shell, "kernel_info_request", json::object()).header.msg_id); };
        ask();
        auto last_ask = steady::now();
        unsigned long iopub_connections = 0;          // as last looked at
        std::optional<steady::time_point> iopub_up_at;  // when a new one was seen
        std::optional<steady::time_point> reply_at;
        std::optional<json> reply;
        bool iopub_seen = false;
        const auto rejected_before = t->rejected()[reject_reason::bad_signature];
        incoming in;
        // Ready once shell answered, iopub is proven and stdin is connected:
        // an input_request sent before that would be dropped by the kernel.
        // A kernel whose stdin never connects still runs cells: after a grace
        // period it is ready without (only input would be lost).
        std::optional<steady::time_point> stdin_grace_end;
        for (;;) {
            const bool answered = reply && iopub_seen;
            if (answered) {
                if (t->stdin_connected()) return *reply;
                if (!stdin_grace_end) stdin_grace_end = std::min(deadline, steady::now() + std::chrono::seconds(2));
                if (steady::now() >= *stdin_grace_end) return *reply;
            }
            // Without a reply, ask again now and then (a request sent while a
            // restarted kernel was binding may be lost); with a reply but no
            // iopub message yet, ask again soon: its busy/idle status proves
            // the subscription; answered, look at stdin again in a moment.
            // A status published before our subscription reached the kernel
            // is lost, and the next ask is the next chance. The subscription
            // travels on the iopub connection as soon as it is up, and a
            // kernel's PUB socket takes it in at one of its next sends
            // (libzmq looks at its commands about once a millisecond), so
            // for 10 ms after a new iopub connection came up the ask is
            // repeated every millisecond, else every 5 ms.
            const auto now = steady::now();
            const bool proving_iopub = reply && !iopub_seen;
            if (proving_iopub)
                if (const auto c = t->iopub_connections(); c != iopub_connections) {
                    iopub_connections = c;
                    iopub_up_at = now;
                }
            using std::chrono::milliseconds;
            const auto resend_after = !reply ? milliseconds(1000)
                                      : iopub_up_at && now - *iopub_up_at < milliseconds(10) ? milliseconds(1)
                                                                                              : milliseconds(5);
            auto wake = answered ? std::min(*stdin_grace_end, now + milliseconds(1))
                                 : std::min(deadline, last_ask + resend_after);
            // To look at the iopub connection, while one may yet come up (ZeroMQ
            // tries to connect again within 5 ms; a transport that does not
            // count connections has none to look at after that either).
            if (proving_iopub && now - *reply_at < milliseconds(20)) wake = std::min(wake, now + milliseconds(1));
            auto st = t->receive(wake, in);
            if (st == receive_status::peer_dead)
                throw error(errc::kernel_died,
                            control ? "the kernel died before it was ready"
                                    : "no kernel answers at the connection's ports (its heartbeat got no echo): the "
                                      "kernel is gone and the connection file is stale; start one with `kernex "
                                      "kernel start` and use the connection file it prints");
            if (st == receive_status::timeout) {
                if (answered) continue;
                if (steady::now() >= deadline) throw not_ready(timeout, reply.has_value(), rejected_before);
                if (steady::now() < last_ask + resend_after) continue;  // woke to look at the iopub connection
                ask();
                last_ask = steady::now();
                continue;
            }
            if (in.channel == channel::iopub) {
                if (!replaced_session.empty() && in.message.header.session == replaced_session) continue;
                iopub_seen = true;
                if (asked.count(in.message.parent_header.msg_id)) iopub_session = in.message.header.session;
                keep_if_comm(in);
            }
            if (in.channel == channel::shell && in.message.msg_type() == "kernel_info_reply" &&
                asked.count(in.message.parent_header.msg_id)) {
                if (!reply) reply_at = steady::now();
                reply = in.message.content;
                reply_session = in.message.header.session;
            }
        }
    }

    message wait_reply(const message& request, channel ch, steady::time_point deadline, const std::string& what) {
        watching watch(*t, current_watch_fd());
        incoming in;
        for (;;) {
            auto st = t->receive(deadline, in);
            if (st == receive_status::peer_dead)
                throw error(errc::kernel_died, "the kernel died before answering " + what);
            if (st == receive_status::timeout) throw error(errc::timeout, "the kernel did not answer " + what + " in time");
            keep_if_comm(in);
            if (in.channel == ch && in.message.parent_header.msg_id == request.header.msg_id) return std::move(in.message);
        }
    }

    // How waiting for a cell ended.
    enum class waited { done, timeout, peer_dead, replaced, stopped };

    // Receives until both the execute reply and iopub idle for it arrived, the
    // deadline passes, the kernel dies or is replaced, or o.stop is requested.
    // Once the reply is in, iopub silent for o.idle_wait means the idle was
    // lost (ZeroMQ drops a connection that brings a frame above
    // max_message_bytes, and what was queued behind it): the cell ends,
    // idle_lost says so, instead of waiting for its deadline. A cell silent
    // for o.probe_after gets a kernel_info_request on control (answered even
    // while the kernel is busy): a reply from another kernel session is a
    // kernel restarted under us, which no heartbeat may notice (restarted on
    // the same ports within a heartbeat period) and whose new process will
    // never answer this cell.
    waited collect(const message& request, execution& result, const execute_options& o, steady::time_point deadline,
                   bool& got_reply, bool& got_idle, bool& idle_lost) {
        incoming in;
        auto quiet_until = steady::time_point::max();
        const bool probing = o.probe_after.count() > 0;
        auto next_probe = probing ? steady::now() + o.probe_after : steady::time_point::max();
        std::unordered_set<std::string> probes;
        // A message that belongs to this cell comes from the kernel that runs
        // it. Replies and iopub are compared separately: a kernel may sign
        // them with different sessions.
        bool learned_reply = false, learned_iopub = false;
        auto learn = [&](channel ch, const message& m) {
            const auto& s = m.header.session;
            if (s.empty() || (ch != channel::shell && ch != channel::iopub)) return;
            bool& learned = ch == channel::shell ? learned_reply : learned_iopub;
            std::string& known = ch == channel::shell ? reply_session : iopub_session;
            if (learned) return;
            learned = true;
            // Not the kernel the last cell ran in: replaced between cells.
            if (!known.empty() && s != known) result.state_lost = true;
            known = s;
        };
        // A kernel announcing its start, or answering a probe, as another session.
        auto replaced_by = [&](const incoming& i) {
            const auto& m = i.message;
            const auto& s = m.header.session;
            if (i.channel == channel::iopub && m.msg_type() == "status") {
                auto state = str(m.content, "execution_state");
                return (state == "starting" || state == "restarting") && !s.empty() && !iopub_session.empty() &&
                       s != iopub_session;
            }
            return i.channel == channel::control && probes.count(m.parent_header.msg_id) > 0 && !s.empty() &&
                   !reply_session.empty() && s != reply_session;
        };
        while (!(got_reply && got_idle)) {
            if (o.stop.stop_requested()) return waited::stopped;
            if (got_reply && quiet_until == steady::time_point::max()) quiet_until = steady::now() + o.idle_wait;
            auto wake = std::min({deadline, quiet_until, next_probe});
            // A stop is seen within 100 ms (the transport waits on its own fds).
            if (o.stop.stop_possible()) wake = std::min(wake, steady::now() + std::chrono::milliseconds(100));
            auto st = t->receive(wake, in);
            const auto now = steady::now();
            if (st == receive_status::peer_dead) return waited::peer_dead;
            if (st == receive_status::timeout) {
                if (now >= deadline) return waited::timeout;
                if (got_reply && now >= quiet_until) {
                    idle_lost = true;
                    return waited::done;
                }
                if (now >= next_probe) {
                    try {
                        probes.insert(send(channel::control, "kernel_info_request", json::object()).header.msg_id);
                    } catch (const error&) {
                        // A transport that cannot send now reports the death on receive.
                    }
                    next_probe = now + o.probe_after;
                }
                continue;
            }
            if (probing) next_probe = now + o.probe_after;
            if (replaced_by(in)) {
                (in.channel == channel::iopub ? iopub_session : reply_session) = in.message.header.session;
                return waited::replaced;
            }
            auto& m = in.message;
            if (in.channel == channel::iopub && got_reply) quiet_until = now + o.idle_wait;
            if (in.channel == channel::iopub)
                if (auto comm = to_comm(m)) {
                    if (comm->parent_msg_id == request.header.msg_id) {
                        const auto size = output_bytes(*comm);
                        if (kept_bytes + size > o.max_output_bytes) {
                            result.dropped_output_bytes += size;
                        } else {
                            kept_bytes += size;
                            result.comms.push_back(*comm);
                        }
                    }
                    if (o.on_comm)
                        o.on_comm(*comm);
                    else
                        keep_comm(std::move(*comm));
                    continue;
                }
            if (m.parent_header.msg_id != request.header.msg_id) continue;
            learn(in.channel, m);
            switch (in.channel) {
            case channel::iopub:
                if (m.msg_type() == "status") {
                    const auto state = str(m.content, "execution_state");
                    if (state == "idle") {
                        got_idle = true;
                        result.dates.idle = m.header.date;
                    } else if (state == "busy") {
                        result.dates.busy = m.header.date;
                    }
                } else if (m.msg_type() == "execute_input") {
                    result.dates.execute_input = m.header.date;
                } else if (auto out = to_output(m)) {
                    if (o.on_output) o.on_output(*out);
                    keep(result, std::move(*out), o.max_output_bytes);
                }
                break;
            case channel::shell:
                if (m.msg_type() == "execute_reply") {
                    result.dates.reply = m.header.date;
                    result.reply = m.content;
                    if (m.content.contains("execution_count") && m.content["execution_count"].is_number_integer())
                        result.execution_count = m.content["execution_count"].get<int>();
                    got_reply = true;
                }
                break;
            case channel::stdin_channel:
                if (m.msg_type() == "input_request") answer_input(m, result, o);
                break;
            case channel::control: break;
            }
        }
        return waited::done;
    }

    // Keeps an output unless the cell's outputs already hold max bytes.
    void keep(execution& result, output&& out, std::size_t max) {
        std::size_t size = output_bytes(out);
        if (kept_bytes + size > max) {
            result.dropped_output_bytes += size;
            return;
        }
        kept_bytes += size;
        result.outputs.push_back(std::move(out));
    }

    void answer_input(const message& req, execution& result, const execute_options& o) {
        input_request ask{str(req.content, "prompt"), req.content.value("password", false)};
        std::string value;
        if (o.on_input)
            value = o.on_input(ask);
        else
            result.input_unanswered = true;
        auto reply = make_reply(req, "input_reply", {{"value", value}}, username);
        reply.identities.clear();  // a DEALER socket routes by itself
        t->send(channel::stdin_channel, reply);
    }

    void interrupt() {
        if (control) {
            control->interrupt();
            return;
        }
        // Not launched by us: ask the kernel itself (interrupt_mode message).
        auto req = send(channel::control, "interrupt_request", json::object());
        (void)req;
    }

    execution execute(const std::string& code, const execute_options& o) {
        auto start = steady::now();
        auto deadline = deadline_after(o.timeout);
        execution result;
        kept_bytes = 0;
        try {
            ensure_ready(deadline);
        } catch (const error& e) {
            // A kernel that dies (again) or hangs while being restarted: an
            // outcome of the cell like any other, not an exception.
            if (e.code() != errc::kernel_died && e.code() != errc::timeout) throw;
            result.status = e.code() == errc::timeout ? execution_status::timeout : execution_status::kernel_died;
            result.note = std::string("the kernel was not ready to run the cell: ") + e.what();
            result.elapsed = steady::now() - start;
            return result;
        }
        watching watch(*t, current_watch_fd());
        const json content = {{"code", code},
                              {"silent", o.silent},
                              {"store_history", o.store_history},
                              {"user_expressions", o.user_expressions},
                              {"allow_stdin", o.allow_stdin},
                              {"stop_on_error", o.stop_on_error}};
        message request;
        bool got_reply = false, got_idle = false, idle_lost = false;
        // A restart we know of (a kernel kernex runs): the generation says it.
        // (Compared with the generation the last cell started in: a restart
        // right after it died may come before or after it returned.)
        const auto generation = control ? control->generation() : 0;
        if (control && ran_a_cell && generation != last_cell_generation) result.state_lost = true;
        waited st;
        // "aborted" means the code did not run. This client sends a cell only
        // after the last one ended, so none of its requests was queued behind
        // a failure: the request reached the kernel inside ipykernel's
        // post-error abort window (it aborts until an event it schedules
        // after the failed cell is dispatched), a race a busy machine loses
        // after an error, an interrupt or a timeout. Sending it again is safe.
        for (int attempt = 0;; ++attempt) {
            request = send(channel::shell, "execute_request", content);
            result.msg_id = request.header.msg_id;
            st = collect(request, result, o, deadline, got_reply, got_idle, idle_lost);
            if (st != waited::done || str(result.reply, "status") != "aborted" || attempt == o.aborted_retries ||
                !result.outputs.empty())
                break;
            const auto pause = std::chrono::milliseconds(20 << attempt);
            if (steady::now() + pause >= deadline) break;
            std::this_thread::sleep_for(pause);
            got_reply = got_idle = idle_lost = false;
            result.reply = json();
        }
        if (st == waited::timeout) {
            result.status = execution_status::timeout;
            result.note = "the cell did not finish within " + seconds_text(*o.timeout) + "; it was interrupted";
            try {
                interrupt();
            } catch (const std::exception& e) {
                result.note += std::string(" (interrupt failed: ") + e.what() + ")";
            }
            st = collect(request, result, o, steady::now() + o.interrupt_grace, got_reply, got_idle, idle_lost);
            if (st == waited::timeout) restart_stuck(result);
        }
        // Replaced between cells (not while this one ran): said first.
        const bool lost_before = result.state_lost;
        if (st == waited::peer_dead) {
            result.status = execution_status::kernel_died;
            result.state_lost = true;
            result.note = "the kernel died while running the cell: its state (variables, imports) was lost";
            // Never left running unattended, should it still be alive.
            try {
                interrupt();
                result.note += " (an interrupt was sent, in case it still runs the cell)";
            } catch (const std::exception&) {
                // Its process is gone: nothing to interrupt.
            }
        } else if (st == waited::replaced) {
            result.status = execution_status::kernel_died;
            result.state_lost = true;
            result.note = "the kernel was restarted while running the cell (a new kernel process answered on its "
                          "ports): the cell's outcome is unknown and the kernel's state was lost";
        } else if (st == waited::stopped) {
            result.status = execution_status::aborted;
            result.abandoned = true;
            if (!result.note.empty()) result.note += "; ";
            result.note += "the cell was abandoned (stop requested) before it ended; the kernel may still be "
                           "running it";
        } else if (result.status != execution_status::timeout) {
            auto status = str(result.reply, "status");
            result.status = status == "ok"      ? execution_status::ok
                            : status == "aborted" ? execution_status::aborted
                                                  : execution_status::error;
            if (result.status == execution_status::aborted && result.note.empty())
                result.note = "the kernel aborted the cell without running it (it aborts requests that arrive "
                              "while it is recovering from a failed cell)";
        }
        if (lost_before)
            result.note = "the kernel was restarted since the previous cell: its state (variables, imports) was "
                          "lost" +
                          (result.note.empty() ? std::string() : "; " + result.note);
        ran_a_cell = true;
        last_cell_generation = generation;
        if (idle_lost) {
            result.outputs_lost = true;
            result.note += std::string(result.note.empty() ? "" : "; ") +
                           "the kernel replied but its idle status did not arrive within " + seconds_text(o.idle_wait) +
                           " on iopub: a message was lost (one above max_message_bytes, or the kernel's iopub "
                           "queue was full), so outputs may be missing";
            // The connection may be the casualty: remake it, prove it next time.
            t->reconnect_iopub();
            iopub_reconnected = true;
        }
        if (result.dropped_output_bytes > 0)
            // Last, so a reader of the outputs (kernex run --json, a
            // notebook) sees that some are missing and how much.
            result.outputs.push_back(outputs::stream{
                "stderr", "[kernex: " + std::to_string(result.dropped_output_bytes) +
                              " bytes of output dropped: the cell's outputs are kept up to max_output_bytes (" +
                              std::to_string(o.max_output_bytes) + ")]\n"});
        result.elapsed = steady::now() - start;
        return result;
    }

    void restart_stuck(execution& result) {
        if (!control) {
            result.note += "; the kernel is still busy (it was not started by kernex, so it cannot be restarted)";
            return;
        }
        try {
            control->restart_kernel();
            result.restarted = true;
            result.note += "; the kernel stayed busy and was restarted (its state is lost)";
        } catch (const std::exception& e) {
            result.note += std::string("; the kernel stayed busy and could not be restarted: ") + e.what();
        }
    }
};

kernel_client::kernel_client(std::unique_ptr<transport> t, std::string session, std::string username)
    : m_impl(std::make_unique<impl>()) {
    if (!t) throw error(errc::invalid_argument, "kernel_client needs a transport");
    m_impl->t = std::move(t);
    m_impl->session = session.empty() ? new_id() : std::move(session);
    m_impl->username = std::move(username);
}

kernel_client kernel_client::from_connection_info(const connection_info& info, client_options options) {
    auto session = options.session.empty() ? new_id() : options.session;
    zmq_transport_options zo{options.heartbeat_period, options.codec, options.iopub_queue_messages};
    return kernel_client(make_zmq_transport(info, session, zo), session, options.username);
}

kernel_client kernel_client::from_connection_file(const std::filesystem::path& path, client_options options) {
    return from_connection_info(read_connection_file(path), std::move(options));
}

kernel_client::kernel_client(kernel_client&&) noexcept = default;
kernel_client& kernel_client::operator=(kernel_client&&) noexcept = default;
kernel_client::~kernel_client() = default;

execution kernel_client::execute(const std::string& code, const execute_options& options) {
    return m_impl->execute(code, options);
}

json kernel_client::wait_for_ready(std::chrono::milliseconds timeout) { return m_impl->wait_ready(timeout); }

message kernel_client::request(channel ch, const std::string& msg_type, json content, std::chrono::milliseconds timeout) {
    auto deadline = steady::now() + timeout;
    m_impl->ensure_ready(deadline);
    auto req = m_impl->send(ch, msg_type, std::move(content));
    return m_impl->wait_reply(req, ch, deadline, msg_type);
}

json kernel_client::kernel_info(std::chrono::milliseconds timeout) {
    return request(channel::shell, "kernel_info_request", json::object(), timeout).content;
}

json kernel_client::complete(const std::string& code, int cursor_pos, std::chrono::milliseconds timeout) {
    return request(channel::shell, "complete_request", {{"code", code}, {"cursor_pos", cursor_pos}}, timeout).content;
}

json kernel_client::inspect(const std::string& code, int cursor_pos, int detail_level, std::chrono::milliseconds timeout) {
    return request(channel::shell, "inspect_request",
                   {{"code", code}, {"cursor_pos", cursor_pos}, {"detail_level", detail_level}}, timeout)
        .content;
}

json kernel_client::is_complete(const std::string& code, std::chrono::milliseconds timeout) {
    return request(channel::shell, "is_complete_request", {{"code", code}}, timeout).content;
}

json kernel_client::history(json req, std::chrono::milliseconds timeout) {
    return request(channel::shell, "history_request", std::move(req), timeout).content;
}

json kernel_client::comm_info(std::chrono::milliseconds timeout) {
    return request(channel::shell, "comm_info_request", json::object(), timeout).content;
}

json kernel_client::comm_info(const std::string& target_name, std::chrono::milliseconds timeout) {
    return request(channel::shell, "comm_info_request", {{"target_name", target_name}}, timeout).content;
}

namespace {

message comm_request(const char* type, json content, json metadata, std::vector<std::string> buffers,
                     const std::string& session, const std::string& username) {
    auto msg = make_request(type, std::move(content), session, username);
    msg.metadata = metadata.is_object() ? std::move(metadata) : json::object();
    msg.buffers = std::move(buffers);
    return msg;
}

}  // namespace

std::string kernel_client::comm_open(const std::string& target_name, json data, json metadata,
                                     std::vector<std::string> buffers, std::string comm_id) {
    if (comm_id.empty()) comm_id = new_id();
    m_impl->t->send(channel::shell,
                    comm_request("comm_open", {{"comm_id", comm_id}, {"target_name", target_name}, {"data", data}},
                                 std::move(metadata), std::move(buffers), m_impl->session, m_impl->username));
    return comm_id;
}

std::string kernel_client::comm_msg(const std::string& comm_id, json data, json metadata,
                                    std::vector<std::string> buffers) {
    auto msg = comm_request("comm_msg", {{"comm_id", comm_id}, {"data", data}}, std::move(metadata),
                            std::move(buffers), m_impl->session, m_impl->username);
    m_impl->t->send(channel::shell, msg);
    return msg.header.msg_id;
}

std::string kernel_client::comm_close(const std::string& comm_id, json data, json metadata) {
    auto msg = comm_request("comm_close", {{"comm_id", comm_id}, {"data", data}}, std::move(metadata), {},
                            m_impl->session, m_impl->username);
    m_impl->t->send(channel::shell, msg);
    return msg.header.msg_id;
}

std::optional<comm_message> kernel_client::next_comm(std::chrono::milliseconds timeout) {
    auto& d = *m_impl;
    if (!d.comms.empty()) {
        auto c = std::move(d.comms.front());
        d.comms.pop_front();
        return c;
    }
    const auto deadline = steady::now() + timeout;
    watching watch(*d.t, d.current_watch_fd());
    incoming in;
    for (;;) {
        const auto st = d.t->receive(deadline, in);
        if (st == receive_status::peer_dead)
            throw error(errc::kernel_died, "the kernel died while a comm message was awaited");
        if (st == receive_status::timeout) return std::nullopt;
        if (in.channel == channel::iopub)
            if (auto c = to_comm(in.message)) return c;
    }
}

std::uint64_t kernel_client::dropped_comms() const noexcept { return m_impl->dropped_comms; }

json kernel_client::shutdown(bool restart, std::chrono::milliseconds timeout) {
    auto deadline = steady::now() + timeout;
    auto req = m_impl->send(channel::control, "shutdown_request", {{"restart", restart}});
    return m_impl->wait_reply(req, channel::control, deadline, "shutdown_request").content;
}

json kernel_client::interrupt_request(std::chrono::milliseconds timeout) {
    auto deadline = steady::now() + timeout;
    auto req = m_impl->send(channel::control, "interrupt_request", json::object());
    return m_impl->wait_reply(req, channel::control, deadline, "interrupt_request").content;
}

void kernel_client::set_control(kernel_control* control) noexcept {
    m_impl->drop_watch_fd();
    m_impl->control = control;
    if (control) m_impl->ready_generation = control->generation();
    // A new baseline: the next cell's state_lost compares with this kernel
    // (kernel_manager calls this after a restart the caller asked for, which
    // is no news to report to the next cell).
    m_impl->ran_a_cell = false;
}

const std::string& kernel_client::session() const noexcept { return m_impl->session; }
transport& kernel_client::get_transport() noexcept { return *m_impl->t; }
reject_counters kernel_client::rejected() const { return m_impl->t->rejected(); }

}  // namespace kernex
