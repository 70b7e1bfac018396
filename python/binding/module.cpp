// kernex._kernex: the Python binding, a thin layer over the public C++ API
// (kernel_manager, kernel_client, make_executor, extract_code_blocks). The
// pure-Python package kernex (python/kernex/__init__.py) re-exports it.
//
// Threads: each Kernel and Executor owns a worker thread that creates, uses
// and destroys its C++ object (and so its ZeroMQ sockets: one thread each, as
// the library wants). A Python call posts a job to it and waits with the GIL
// released, waking every 50 ms to let Python run its signal handlers: Ctrl-C
// interrupts the running cell or block (a second one kills a kernel that
// ignores it), the call returns once the job has ended, and then
// KeyboardInterrupt is raised. Output callbacks run on the worker thread
// with the GIL held.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11_json/pybind11_json.hpp>

#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "kernex/error.hpp"
#include "kernex/executor.hpp"
#include "kernex/kernel_client.hpp"
#include "kernex/kernel_manager.hpp"

namespace py = pybind11;
using namespace std::chrono_literals;

namespace {

// kernex.Error: a kernex::error's message, with .code its errc's name.
PyObject* error_type = nullptr;

// The seconds a Python caller gives (None: no limit) as a deadline.
std::optional<std::chrono::milliseconds> to_timeout(const std::optional<double>& seconds) {
    if (!seconds) return std::nullopt;
    if (*seconds < 0) throw kernex::error(kernex::errc::invalid_argument, "a timeout cannot be negative");
    return std::chrono::milliseconds(static_cast<std::int64_t>(*seconds * 1000.0));
}

// One thread that runs jobs, in order.
class worker {
public:
    worker() : m_thread([this] { loop(); }) {}
    ~worker() { stop(); }
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    // Runs the jobs already posted, then ends the thread. Call without the GIL
    // when a job may call Python.
    void stop() noexcept {
        {
            std::lock_guard lock(m_mutex);
            m_stopping = true;
        }
        m_ready.notify_all();
        if (m_thread.joinable() && m_thread.get_id() != std::this_thread::get_id()) m_thread.join();
    }

    // Queues job (which must not throw) to run on the worker thread.
    void post(std::function<void()> job) {
        {
            std::lock_guard lock(m_mutex);
            m_jobs.push_back(std::move(job));
        }
        m_ready.notify_one();
    }

    // Runs job on the worker thread, the caller waiting as the file comment
    // says, and returns its value or throws its exception. on_interrupt(n)
    // is called (without the GIL) on the n-th Ctrl-C while the job runs.
    // Call with the GIL held.
    template <typename Job>
    auto run(Job&& job, const std::function<void(int)>& on_interrupt = {}) -> std::invoke_result_t<Job&> {
        using result_type = std::invoke_result_t<Job&>;
        using stored = std::conditional_t<std::is_void_v<result_type>, bool, result_type>;
        struct state {
            std::mutex mutex;
            std::condition_variable done_cv;
            bool done = false;
            std::optional<stored> value;
            std::exception_ptr failure;
        };
        auto st = std::make_shared<state>();
        {
            std::lock_guard lock(m_mutex);
            if (m_stopping) throw kernex::error(kernex::errc::invalid_argument, "this object was closed");
            m_jobs.emplace_back([st, &job] {
                try {
                    if constexpr (std::is_void_v<result_type>) {
                        job();
                        st->value.emplace(true);
                    } else {
                        st->value.emplace(job());
                    }
                } catch (...) {
                    st->failure = std::current_exception();
                }
                std::lock_guard lock(st->mutex);
                st->done = true;
                st->done_cv.notify_all();
            });
        }
        m_ready.notify_one();

        std::optional<py::error_already_set> pending;  // the first Ctrl-C's KeyboardInterrupt
        int interrupts = 0;
        for (;;) {
            bool done;
            {
                py::gil_scoped_release release;
                std::unique_lock lock(st->mutex);
                done = st->done_cv.wait_for(lock, 50ms, [&] { return st->done; });
            }
            if (done) break;
            if (PyErr_CheckSignals() != 0) {
                py::error_already_set raised;
                if (!pending) pending.emplace(std::move(raised));
                ++interrupts;
                if (on_interrupt) {
                    py::gil_scoped_release release;
                    try {
                        on_interrupt(interrupts);
                    } catch (...) {
                        // The kernel may be gone already: the job ends on its own then.
                    }
                }
            }
        }
        if (pending) throw std::move(*pending);
        if (st->failure) std::rethrow_exception(st->failure);
        if constexpr (!std::is_void_v<result_type>) return std::move(*st->value);
    }

private:
    void loop() {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock lock(m_mutex);
                m_ready.wait(lock, [&] { return m_stopping || !m_jobs.empty(); });
                if (m_jobs.empty()) return;
                job = std::move(m_jobs.front());
                m_jobs.pop_front();
            }
            job();
        }
    }

    std::mutex m_mutex;
    std::condition_variable m_ready;
    std::deque<std::function<void()>> m_jobs;
    bool m_stopping = false;
    std::thread m_thread;
};

// A Python callable's first exception, kept until the C++ call it ran in
// has returned (C++ code between it and Python must not unwind through a
// Python error). Touch only with the GIL held.
struct callback_failure {
    std::optional<py::error_already_set> error;
    void rethrow() {
        if (error) {
            auto e = std::move(*error);
            error.reset();
            throw e;
        }
    }
};

// Text from a kernel or a process as str (invalid UTF-8 replaced).
py::str decoded(const std::string& text) {
    return py::reinterpret_steal<py::str>(
        PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace"));
}

// An output as nbformat shapes it: {"output_type": ..., ...}.
py::dict output_to_dict(const kernex::output& o) {
    py::dict d;
    std::visit(
        [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, kernex::outputs::stream>) {
                d["output_type"] = "stream";
                d["name"] = v.name;
                d["text"] = decoded(v.text);
            } else if constexpr (std::is_same_v<T, kernex::outputs::display_data>) {
                d["output_type"] = "display_data";
                d["data"] = pyjson::from_json(v.data);
                d["metadata"] = pyjson::from_json(v.metadata.is_null() ? nlohmann::json::object() : v.metadata);
                if (v.transient.is_object() && !v.transient.empty()) d["transient"] = pyjson::from_json(v.transient);
            } else if constexpr (std::is_same_v<T, kernex::outputs::update_display_data>) {
                d["output_type"] = "update_display_data";
                d["data"] = pyjson::from_json(v.data);
                d["metadata"] = pyjson::from_json(v.metadata.is_null() ? nlohmann::json::object() : v.metadata);
                d["transient"] = py::dict(py::arg("display_id") = v.display_id);
            } else if constexpr (std::is_same_v<T, kernex::outputs::execute_result>) {
                d["output_type"] = "execute_result";
                d["execution_count"] = v.execution_count;
                d["data"] = pyjson::from_json(v.data);
                d["metadata"] = pyjson::from_json(v.metadata.is_null() ? nlohmann::json::object() : v.metadata);
            } else if constexpr (std::is_same_v<T, kernex::outputs::error>) {
                d["output_type"] = "error";
                d["ename"] = v.ename;
                d["evalue"] = v.evalue;
                d["traceback"] = v.traceback;
            } else {
                d["output_type"] = "clear_output";
                d["wait"] = v.wait;
            }
        },
        o);
    return d;
}

// kernex.Execution: what execute() returns.
struct py_execution {
    kernex::execution value;

    std::string status() const { return std::string(kernex::to_string(value.status)); }
    py::list outputs() const {
        py::list out;
        for (const auto& o : value.outputs) out.append(output_to_dict(o));
        return out;
    }
    py::object result() const {
        auto text = value.result_text();
        return text ? py::object(decoded(*text)) : py::object(py::none());
    }
    py::object error() const {
        const auto* e = value.error();
        if (!e) return py::none();
        return py::dict(py::arg("ename") = e->ename, py::arg("evalue") = e->evalue,
                        py::arg("traceback") = e->traceback);
    }
    std::string repr() const {
        return "<kernex.Execution status=" + status() + " execution_count=" + std::to_string(value.execution_count) +
               " outputs=" + std::to_string(value.outputs.size()) + ">";
    }
};

// kernex.Kernel: a kernel kernex started (kernel_manager) or one it attached
// to from a connection file (kernel_client).
class py_kernel {
public:
    static std::unique_ptr<py_kernel> start(kernex::kernel_options options) {
        auto k = std::unique_ptr<py_kernel>(new py_kernel());
        k->m_worker.run([&] {
            k->m_manager.emplace(kernex::kernel_manager::start(std::move(options)));
            k->m_client = &k->m_manager->client();
        });
        k->m_kernel_name = k->m_manager->spec().name;
        k->m_connection_file = k->m_manager->connection_file().string();
        return k;
    }

    static std::unique_ptr<py_kernel> connect(const std::string& connection_file) {
        auto k = std::unique_ptr<py_kernel>(new py_kernel());
        k->m_worker.run([&] {
            k->m_attached.emplace(kernex::kernel_client::from_connection_file(connection_file));
            k->m_client = &*k->m_attached;
            k->m_client->wait_for_ready(30s);
        });
        k->m_connection_file = connection_file;
        return k;
    }

    ~py_kernel() {
        py::gil_scoped_release release;
        shutdown_now();
    }

    py_execution execute(const std::string& code, std::optional<double> timeout, const py::object& on_output,
                         const py::object& on_input, bool silent, bool store_history, bool stop_on_error) {
        kernex::execute_options options;
        options.timeout = to_timeout(timeout);
        options.silent = silent;
        options.store_history = store_history;
        options.stop_on_error = stop_on_error;
        callback_failure failed;
        if (!on_output.is_none()) {
            options.on_output = [&](const kernex::output& o) {
                py::gil_scoped_acquire gil;
                if (failed.error) return;
                try {
                    on_output(output_to_dict(o));
                } catch (py::error_already_set& e) {
                    failed.error.emplace(std::move(e));
                }
            };
        }
        if (!on_input.is_none()) {
            options.on_input = [&](const kernex::input_request& request) -> std::string {
                py::gil_scoped_acquire gil;
                if (failed.error) return {};
                try {
                    return py::str(on_input(request.prompt, request.password));
                } catch (py::error_already_set& e) {
                    failed.error.emplace(std::move(e));
                    return {};
                }
            };
        } else {
            options.allow_stdin = false;
        }
        auto value = m_worker.run([&] { return client().execute(code, options); },
                                  [this](int n) { on_ctrl_c(n); });
        failed.rethrow();
        return py_execution{std::move(value)};
    }

    nlohmann::json complete(const std::string& code, std::optional<int> cursor_pos, double timeout) {
        const int pos = cursor_pos.value_or(static_cast<int>(code_points(code)));
        return m_worker.run([&] { return client().complete(code, pos, *to_timeout(timeout)); });
    }

    nlohmann::json inspect(const std::string& code, std::optional<int> cursor_pos, int detail_level, double timeout) {
        const int pos = cursor_pos.value_or(static_cast<int>(code_points(code)));
        return m_worker.run([&] { return client().inspect(code, pos, detail_level, *to_timeout(timeout)); });
    }

    nlohmann::json kernel_info(double timeout) {
        return m_worker.run([&] { return client().kernel_info(*to_timeout(timeout)); });
    }

    // From any thread: interrupts the running cell.
    void interrupt() {
        py::gil_scoped_release release;
        std::shared_lock lock(m_life);
        if (m_closed) throw kernex::error(kernex::errc::invalid_argument, "this kernel was shut down");
        if (m_manager) {
            m_manager->interrupt();
        } else {
            kernex::kernel_client::from_connection_file(m_connection_file).interrupt_request(5s);
        }
    }

    void restart(bool now) {
        m_worker.run([&] {
            if (!m_manager)
                throw kernex::error(kernex::errc::unsupported,
                                    "cannot restart a kernel kernex did not start (connect()); restart it where it runs");
            m_manager->restart({.now = now});
        });
    }

    void shutdown() {
        py::gil_scoped_release release;
        shutdown_now();
    }

    bool alive() {
        std::shared_lock lock(m_life);
        if (m_closed) return false;
        return m_manager ? m_manager->alive() : true;
    }
    int pid() {
        std::shared_lock lock(m_life);
        return m_manager && !m_closed ? m_manager->pid() : -1;
    }
    std::string id() {
        std::shared_lock lock(m_life);
        return m_manager && !m_closed ? m_manager->id() : std::string();
    }
    int restart_count() {
        std::shared_lock lock(m_life);
        return m_manager && !m_closed ? m_manager->restart_count() : 0;
    }
    const std::string& kernel_name() const noexcept { return m_kernel_name; }
    const std::string& connection_file() const noexcept { return m_connection_file; }
    bool closed() {
        std::shared_lock lock(m_life);
        return m_closed;
    }

private:
    py_kernel() = default;

    kernex::kernel_client& client() {
        if (!m_client) throw kernex::error(kernex::errc::invalid_argument, "this kernel was shut down");
        return *m_client;
    }

    // Ctrl-C while a cell runs: interrupt it; again: kill a kernel that
    // ignores interrupts (the cell then ends kernel_died and the kernel is
    // restarted).
    void on_ctrl_c(int n) {
        std::shared_lock lock(m_life);
        if (m_closed) return;
        if (!m_manager) {
            kernex::kernel_client::from_connection_file(m_connection_file).interrupt_request(5s);
            return;
        }
        if (n == 1) {
            m_manager->interrupt();
        } else if (int pid = m_manager->pid(); pid > 0) {
            ::kill(-pid, SIGKILL);
        }
    }

    // Shuts the kernel down (one kernex started) or closes the client, on
    // the worker thread, then ends the thread. Without the GIL. noexcept.
    void shutdown_now() noexcept {
        {
            std::unique_lock lock(m_life);
            if (m_closed) return;
            m_closed = true;
        }
        // After any job still running (a cell another thread started).
        m_worker.post([this]() noexcept {
            if (m_manager) m_manager->shutdown();
            m_client = nullptr;
            m_manager.reset();
            m_attached.reset();
        });
        m_worker.stop();
    }

    static std::size_t code_points(const std::string& s) {
        std::size_t n = 0;
        for (unsigned char c : s) n += (c & 0xC0) != 0x80;
        return n;
    }

    worker m_worker;
    std::shared_mutex m_life;  // interrupt() from other threads vs shutdown
    bool m_closed = false;
    std::optional<kernex::kernel_manager> m_manager;
    std::optional<kernex::kernel_client> m_attached;
    kernex::kernel_client* m_client = nullptr;
    std::string m_kernel_name;
    std::string m_connection_file;
};

// kernex.CodeResult: what Executor.execute() returns.
struct py_code_result {
    kernex::code_result value;

    static py::list paths(const std::vector<std::filesystem::path>& files) {
        py::list out;
        for (const auto& f : files) out.append(f.string());
        return out;
    }
    std::string repr() const {
        return "<kernex.CodeResult exit_code=" + std::to_string(value.exit_code) +
               " output=" + std::to_string(value.output.size()) + " bytes>";
    }
};

// Blocks from Python: objects with .language and .code (AG2's and
// AutoGen's CodeBlock, kernex.CodeBlock), (language, code) pairs, dicts
// with those keys, or one str of markdown whose fenced blocks are taken.
std::vector<kernex::code_block> to_blocks(const py::handle& blocks) {
    if (py::isinstance<py::str>(blocks)) return kernex::extract_code_blocks(blocks.cast<std::string>());
    std::vector<kernex::code_block> out;
    for (const auto& item : blocks) {
        if (py::hasattr(item, "language") && py::hasattr(item, "code")) {
            out.push_back({py::str(item.attr("language")), py::str(item.attr("code"))});
        } else if (py::isinstance<py::dict>(item)) {
            out.push_back({item["language"].cast<std::string>(), item["code"].cast<std::string>()});
        } else if (py::isinstance<py::tuple>(item) && py::len(item) == 2) {
            out.push_back({item[py::int_(0)].cast<std::string>(), item[py::int_(1)].cast<std::string>()});
        } else {
            throw kernex::error(kernex::errc::invalid_argument,
                                "a code block is an object with .language and .code, a (language, code) pair, "
                                "or a dict with those keys; got " +
                                    std::string(py::str(py::type::of(item).attr("__name__"))));
        }
    }
    return out;
}

// kernex.BlockReview: what an Executor's approve hook is shown of a block
// just before it runs (a copy: the hook may keep it).
struct py_block_review {
    std::size_t index = 0;
    std::size_t count = 0;
    std::string language;
    std::string code;
    std::string sha256;
    std::size_t hidden_characters = 0;

    std::string repr() const {
        return "<kernex.BlockReview " + std::to_string(index + 1) + " of " + std::to_string(count) + " (" + language +
               ") sha256=" + sha256.substr(0, 12) + "...>";
    }
};

// An approve hook's answer: "run", "skip", "stop", or a bool (True: run,
// False: stop). Anything else stops execute() with kernex.Error.
kernex::approval to_approval(const py::handle& answer) {
    if (py::isinstance<py::bool_>(answer)) return answer.cast<bool>() ? kernex::approval::run : kernex::approval::stop;
    if (py::isinstance<py::str>(answer)) {
        const auto word = answer.cast<std::string>();
        if (word == "run") return kernex::approval::run;
        if (word == "skip") return kernex::approval::skip;
        if (word == "stop") return kernex::approval::stop;
    }
    throw kernex::error(kernex::errc::invalid_argument,
                        "the approve hook returned " + std::string(py::repr(answer)) +
                            "; it returns \"run\", \"skip\", \"stop\", True (run) or False (stop). Nothing more ran");
}

// Leaves execute() after the approve hook raised: the Python exception is
// kept (callback_failure) and raised once the call is back in Python.
struct approve_hook_raised {};

// kernex.Executor: one of make_executor's executors.
class py_executor {
public:
    explicit py_executor(const nlohmann::json& config) {
        m_worker.run([&] { m_executor = kernex::make_executor(config); });
    }
    ~py_executor() {
        py::gil_scoped_release release;
        close_now();
    }

    py_code_result execute(const py::object& blocks, const py::object& on_output) {
        auto cpp_blocks = to_blocks(blocks);
        m_approve_failure.error.reset();
        callback_failure failed;
        kernex::output_handler handler;
        if (!on_output.is_none()) {
            handler = [&](std::string_view text) {
                py::gil_scoped_acquire gil;
                if (failed.error) return;
                try {
                    on_output(decoded(std::string(text)));
                } catch (py::error_already_set& e) {
                    failed.error.emplace(std::move(e));
                }
            };
        }
        kernex::code_result value;
        try {
            value = m_worker.run([&] { return executor().execute(cpp_blocks, handler); }, [this](int) { interrupt(); });
        } catch (const approve_hook_raised&) {
            m_approve_failure.rethrow();
            throw;
        }
        failed.rethrow();
        return py_code_result{std::move(value)};
    }

    // hook(BlockReview) is asked before each block of every later execute()
    // (on the executor's thread, with the GIL); None removes it.
    void set_approve(const py::object& hook) {
        if (!hook.is_none() && !PyCallable_Check(hook.ptr()))
            throw py::type_error("set_approve takes a callable (or None), not " +
                                 std::string(py::str(py::type::of(hook).attr("__name__"))));
        m_approve = hook;
        if (hook.is_none()) {
            m_worker.run([&] { executor().set_approve(nullptr); });
            return;
        }
        m_worker.run([&] {
            executor().set_approve([this](const kernex::block_review& r) { return ask(r); });
        });
    }

    // From any thread (and from Ctrl-C): stops the running blocks as a timeout would.
    void interrupt() noexcept {
        std::shared_lock lock(m_life);
        if (!m_closed && m_executor) m_executor->interrupt();
    }

    void restart() {
        m_worker.run([&] { executor().restart(); });
    }

    // Releases the executor's kernel, container or temporary dir; execute()
    // makes new ones (the executor's stop()).
    void stop() {
        m_worker.run([&] { executor().stop(); });
    }

    void close() {
        py::gil_scoped_release release;
        close_now();
    }
    bool closed() {
        std::shared_lock lock(m_life);
        return m_closed;
    }

private:
    // The C++ hook: the Python one's answer; its exception leaves execute().
    kernex::approval ask(const kernex::block_review& r) {
        py::gil_scoped_acquire gil;
        if (m_approve.is_none()) return kernex::approval::run;
        py::object answer;
        try {
            answer = m_approve(py_block_review{r.index, r.count, std::string(r.language), std::string(r.code), r.sha256,
                                               r.hidden_characters});
        } catch (py::error_already_set& e) {
            if (!m_approve_failure.error) m_approve_failure.error.emplace(std::move(e));
            throw approve_hook_raised{};
        }
        return to_approval(answer);
    }

    kernex::code_executor& executor() {
        if (!m_executor) throw kernex::error(kernex::errc::invalid_argument, "this executor was closed");
        return *m_executor;
    }

    void close_now() noexcept {
        {
            std::unique_lock lock(m_life);
            if (m_closed) return;
            m_closed = true;
        }
        m_worker.post([this]() noexcept {
            if (m_executor) m_executor->stop();
            m_executor.reset();
        });
        m_worker.stop();
    }

    worker m_worker;
    std::shared_mutex m_life;  // interrupt() from other threads vs close
    bool m_closed = false;
    std::unique_ptr<kernex::code_executor> m_executor;
    py::object m_approve = py::none();  // touched with the GIL only
    callback_failure m_approve_failure;  // the hook's exception, during one execute()
};

}  // namespace

PYBIND11_MODULE(_kernex, m) {
    m.doc() = "kernex's C++ core (use the package kernex, which re-exports it)";

    error_type = PyErr_NewExceptionWithDoc(
        "kernex.Error",
        "A kernex::error: the message says what to do; .code is its category "
        "(\"invalid_argument\", \"not_found\", \"launch_failed\", \"timeout\", \"kernel_died\", ...).",
        PyExc_Exception, nullptr);
    m.attr("Error") = py::handle(error_type);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const kernex::error& e) {
            py::object instance = py::reinterpret_steal<py::object>(
                PyObject_CallFunction(error_type, "s", e.what()));
            if (!instance) return;  // the call set its own error
            instance.attr("code") = std::string(kernex::to_string(e.code()));
            PyErr_SetObject(error_type, instance.ptr());
        }
    });

    py::class_<py_execution>(m, "Execution", "The outcome of Kernel.execute(): status, outputs, reply.")
        .def_property_readonly("status", &py_execution::status,
                               "\"ok\", \"error\", \"aborted\", \"timeout\" or \"kernel_died\"")
        .def_property_readonly("ok", [](const py_execution& e) { return e.value.status == kernex::execution_status::ok; })
        .def_property_readonly("execution_count", [](const py_execution& e) { return e.value.execution_count; })
        .def_property_readonly("outputs", &py_execution::outputs, "outputs in arrival order, as nbformat dicts")
        .def_property_readonly("text", [](const py_execution& e) { return decoded(e.value.stream_text()); },
                               "all stream text (stdout and stderr as they arrived)")
        .def_property_readonly("result", &py_execution::result, "the execute_result's text/plain, or None")
        .def_property_readonly("error", &py_execution::error, "{ename, evalue, traceback}, or None")
        .def_property_readonly("reply", [](const py_execution& e) { return e.value.reply; }, "the execute_reply content")
        .def_property_readonly("elapsed", [](const py_execution& e) {
            return std::chrono::duration<double>(e.value.elapsed).count();
        }, "seconds")
        .def_property_readonly("restarted", [](const py_execution& e) { return e.value.restarted; },
                               "the kernel ignored the interrupt after a timeout and was restarted")
        .def_property_readonly("input_unanswered", [](const py_execution& e) { return e.value.input_unanswered; })
        .def_property_readonly("dropped_output_bytes", [](const py_execution& e) { return e.value.dropped_output_bytes; })
        .def_property_readonly("note", [](const py_execution& e) { return e.value.note; })
        .def("__repr__", &py_execution::repr);

    py::class_<py_kernel>(m, "Kernel", "A Jupyter kernel: start_kernel() or connect().")
        .def("execute", &py_kernel::execute, py::arg("code"), py::kw_only(), py::arg("timeout") = py::none(),
             py::arg("on_output") = py::none(), py::arg("on_input") = py::none(), py::arg("silent") = false,
             py::arg("store_history") = true, py::arg("stop_on_error") = true,
             "Runs code; returns an Execution. timeout (seconds, None: none) is for the whole cell: the cell "
             "is interrupted (the kernel restarted if it ignores that) and the partial outputs kept. "
             "on_output(dict) sees each output as it arrives; on_input(prompt, password) answers input().")
        .def("complete", &py_kernel::complete, py::arg("code"), py::arg("cursor_pos") = py::none(),
             py::kw_only(), py::arg("timeout") = 10.0, "complete_reply content (cursor_pos: end of code by default)")
        .def("inspect", &py_kernel::inspect, py::arg("code"), py::arg("cursor_pos") = py::none(),
             py::arg("detail_level") = 0, py::kw_only(), py::arg("timeout") = 10.0, "inspect_reply content")
        .def("kernel_info", &py_kernel::kernel_info, py::kw_only(), py::arg("timeout") = 10.0)
        .def("interrupt", &py_kernel::interrupt, "Interrupts the running cell (from any thread).")
        .def("restart", &py_kernel::restart, py::kw_only(), py::arg("now") = false,
             "Restarts the kernel (fresh state) and waits until it is ready.")
        .def("shutdown", &py_kernel::shutdown,
             "Shuts the kernel down (one kernex started; connect(): closes the connection). Idempotent.")
        .def_property_readonly("alive", &py_kernel::alive)
        .def_property_readonly("pid", &py_kernel::pid)
        .def_property_readonly("id", &py_kernel::id)
        .def_property_readonly("restart_count", &py_kernel::restart_count)
        .def_property_readonly("kernel_name", &py_kernel::kernel_name)
        .def_property_readonly("connection_file", &py_kernel::connection_file)
        .def_property_readonly("closed", &py_kernel::closed)
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](py_kernel& k, const py::args&) { k.shutdown(); });

    m.def("_start_kernel",
          [](const std::string& kernel_name, std::optional<std::string> cwd, std::map<std::string, std::string> env,
             double startup_timeout, std::string transport, bool autorestart) {
              kernex::kernel_options options;
              options.kernel_name = kernel_name;
              if (cwd) options.cwd = *cwd;
              options.env = std::move(env);
              options.ready_timeout = *to_timeout(startup_timeout);
              options.transport = std::move(transport);
              options.autorestart = autorestart;
              return py_kernel::start(std::move(options));
          },
          py::arg("kernel_name"), py::arg("cwd"), py::arg("env"), py::arg("startup_timeout"), py::arg("transport"),
          py::arg("autorestart"));
    m.def("_connect", &py_kernel::connect, py::arg("connection_file"));

    py::class_<py_code_result>(m, "CodeResult", "The outcome of Executor.execute().")
        .def_property_readonly("exit_code", [](const py_code_result& r) { return r.value.exit_code; },
                               "0 ok, 1 error, 124 timeout, 130 interrupted")
        .def_property_readonly("output", [](const py_code_result& r) { return decoded(r.value.output); })
        .def_property_readonly("code_files", [](const py_code_result& r) { return py_code_result::paths(r.value.code_files); })
        .def_property_readonly("output_files",
                               [](const py_code_result& r) { return py_code_result::paths(r.value.output_files); })
        .def_property_readonly("timed_out", [](const py_code_result& r) { return r.value.timed_out; })
        .def_property_readonly("truncated", [](const py_code_result& r) { return r.value.truncated; })
        .def_property_readonly(
            "approvals", [](const py_code_result& r) { return r.value.to_json()["approvals"]; },
            "with an approve hook: [{\"index\", \"sha256\", \"verdict\": \"approved\"|\"skipped\"|\"refused\"}] for each "
            "block it was asked about and each block a stop refused; [] without one")
        .def("__repr__", &py_code_result::repr);

    py::class_<py_block_review>(m, "BlockReview",
                                "What an approve hook is shown of a block just before it runs: the exact bytes.")
        .def_readonly("index", &py_block_review::index, "its place among execute()'s blocks, from 0")
        .def_readonly("count", &py_block_review::count, "how many blocks execute() was given")
        .def_readonly("language", &py_block_review::language)
        .def_property_readonly("code", [](const py_block_review& r) { return decoded(r.code); },
                               "the code that will run (invalid UTF-8 shown as U+FFFD; sha256 is of the bytes)")
        .def_readonly("sha256", &py_block_review::sha256, "the SHA-256 of the code's bytes, 64 hex digits")
        .def_readonly("hidden_characters", &py_block_review::hidden_characters,
                      "control and bidirectional characters a screen does not show as they are: not 0, what a "
                      "human reads may not be what runs")
        .def_property_readonly("printable_code", [](const py_block_review& r) { return decoded(kernex::printable_code(r.code)); },
                               "the code with each hidden character written as an escape (\\x1b, \\u202e)")
        .def("__repr__", &py_block_review::repr);

    py::class_<py_executor>(m, "Executor", "A code executor: make_executor().")
        .def(py::init<const nlohmann::json&>(), py::arg("config"))
        .def("execute", &py_executor::execute, py::arg("blocks"), py::kw_only(), py::arg("on_output") = py::none(),
             "Runs the blocks in order, stopping at the first failure; returns a CodeResult. on_output(str) "
             "sees the output as it arrives.")
        .def("set_approve", &py_executor::set_approve, py::arg("hook"),
             "hook(BlockReview) is asked before each block of every later execute() and answers \"run\", "
             "\"skip\" (the next block is asked about), \"stop\" (nothing more runs; exit_code 1), True (run) or "
             "False (stop); the time it takes does not count against the timeout; what it raises leaves execute() "
             "with nothing more run. None removes it. CodeResult.approvals records the answers.")
        .def("interrupt", &py_executor::interrupt, "Stops the running blocks (from any thread): exit_code 130.")
        .def("restart", &py_executor::restart)
        .def("stop", &py_executor::stop)
        .def("close", &py_executor::close)
        .def_property_readonly("closed", &py_executor::closed)
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](py_executor& e, const py::args&) { e.close(); });

    m.def("_save_code_block",
          [](const std::string& dir, const std::string& code, const std::string& extension) {
              return kernex::save_code_block(dir, code, extension).string();
          },
          py::arg("dir"), py::arg("code"), py::arg("extension"));

    m.def("_extract_code_blocks",
          [](const std::string& markdown, const std::string& default_language) {
              std::vector<std::pair<std::string, std::string>> out;
              for (auto& b : kernex::extract_code_blocks(markdown, default_language))
                  out.emplace_back(std::move(b.language), std::move(b.code));
              return out;
          },
          py::arg("markdown"), py::arg("default_language") = "python");
}
