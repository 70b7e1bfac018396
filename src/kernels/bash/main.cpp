// kernex-bash: a Jupyter kernel that keeps one bash session alive across
// cells. Started by a Jupyter client as `kernex-bash -f CONNECTION_FILE`.
#include "bash_interpreter.hpp"
#include "child.hpp"
#include "kernel_server.hpp"

#include <xeus/xhelper.hpp>
#include <xeus/xkernel.hpp>
#include <xeus/xkernel_configuration.hpp>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <thread>

#include <zmq.hpp>

namespace {

using kernex::bash::bash_interpreter;

// Signals the kernel acts on. They are blocked in every thread and taken by
// one thread with sigwait: a handler could interrupt xeus's zmq_poll (EINTR
// ends its loop) and could do almost nothing safely.
sigset_t handled_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR2}) sigaddset(&set, sig);
    return set;
}

// SIGINT (Jupyter sends it to the kernel's process group): forwarded to the
// shell's own group by the cell loop. SIGTERM/SIGHUP: the shell's group is
// ended, then the kernel dies of the same signal. SIGUSR2: the main thread
// asks this thread to leave.
void signal_loop() {
    const sigset_t set = handled_signals();
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGUSR2) return;
        if (sig == SIGINT) {
            bash_interpreter::interrupt_live();
            continue;
        }
        bash_interpreter::terminate_live();
        signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
        raise(sig);
        std::_Exit(128 + sig);
    }
}

// The client that launched us names itself in JPY_PARENT_PID (jupyter_client
// and kernex both do): when it dies without shutting us down (killed, or
// crashed), we end as on SIGTERM, shell included, instead of living on as
// an orphan nobody will stop. ipykernel does the same.
void watch_parent() {
    const char* text = std::getenv("JPY_PARENT_PID");
    const long parent = text ? std::strtol(text, nullptr, 10) : 0;
    if (parent <= 1) return;
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(parent), 0));
    if (fd < 0) {
        if (errno == ESRCH) ::kill(::getpid(), SIGTERM);  // already gone
        return;
    }
    std::thread([fd] {
        pollfd p{fd, POLLIN, 0};
        while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
        }
        ::kill(::getpid(), SIGTERM);  // taken by signal_loop's sigwait
    }).detach();
}

void print_usage() {
    std::cout << "usage: kernex-bash -f CONNECTION_FILE\n"
                 "A Jupyter kernel running one stateful bash session (kernex).\n"
                 "Options: -f FILE  the connection file written by the Jupyter client\n"
                 "         --version\n";
}

}  // namespace

int main(int argc, char* argv[]) {
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            print_usage();
            return 0;
        }
    }
    if (xeus::should_print_version(argc, argv)) {
        std::cout << "kernex-bash " KERNEX_VERSION "\n";
        return 0;
    }

    // Writes to a dead shell's pipes must fail with EPIPE, not kill the kernel.
    signal(SIGPIPE, SIG_IGN);
    sigset_t set = handled_signals();
    // SIGUSR1 ends the main thread's wait for an input_reply (see
    // bash_interpreter::cancel_input): a handler that does nothing, without
    // SA_RESTART, and the signal blocked everywhere but there and then.
    struct sigaction wake {};
    wake.sa_handler = [](int) {};
    sigemptyset(&wake.sa_mask);
    sigaction(SIGUSR1, &wake, nullptr);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread exists: all inherit it

    const auto bash_path = kernex::bash::find_on_path("bash");
    if (!bash_path) {
        std::cerr << "kernex-bash: bash not found on PATH\n";
        return 1;
    }

    try {
        auto interpreter = std::make_unique<bash_interpreter>(*bash_path);
        auto history = std::make_unique<kernex::bash::history_manager>();
        interpreter->use_history(history.get());
        std::thread signals(signal_loop);
        const pthread_t signals_handle = signals.native_handle();
        watch_parent();
        int status = 0;
        try {
            auto context = xeus::make_context<zmq::context_t>();
            const std::string file_name = xeus::extract_filename(argc, argv);
            if (file_name.empty()) {
                xeus::xkernel kernel(xeus::get_user_name(), std::move(context),
                                     std::move(interpreter), kernex::bash::make_kernel_server,
                                     std::move(history), nullptr,
                                     xeus::make_null_debugger, nl::json::object(),
                                     nl::json::error_handler_t::replace);
                std::cout << xeus::print_starting_message(kernel.get_config()) << std::flush;
                kernel.start();
            } else {
                xeus::xkernel kernel(xeus::load_configuration(file_name), xeus::get_user_name(),
                                     std::move(context), std::move(interpreter),
                                     kernex::bash::make_kernel_server,
                                     std::move(history), nullptr,
                                     xeus::make_null_debugger, nl::json::object(),
                                     nl::json::error_handler_t::replace);
                kernel.start();
            }
        } catch (const std::exception& e) {
            std::cerr << "kernex-bash: " << e.what() << "\n";
            status = 1;
        }
        // Reached when the kernel could not start: after a shutdown_request,
        // xeus's threaded server ends the process with exit(0) itself.
        pthread_kill(signals_handle, SIGUSR2);
        signals.join();
        return status;
    } catch (const std::exception& e) {
        std::cerr << "kernex-bash: " << e.what() << "\n";
        return 1;
    }
}
