// `kernex kernel start`: launch a kernel for other clients (jupyter console
// --existing, jupyter_client, another kernex) and keep it until SIGINT or
// SIGTERM, then shut it down cleanly; or until a client shuts it down
// (`exit` in jupyter console), which ends kernex as cleanly.
#include <signal.h>

#include <atomic>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/container_flags.hpp"
#include "cli/kernel_records.hpp"
#include "kernex/kernel_manager.hpp"

namespace kernex::cli {

namespace {

struct kernel_args {
    std::string kernel = "python3";
    std::string connection_file;
    std::string docker_image;
    std::string work_dir;
    container_flags container;
    std::optional<double> ready_timeout;  // unset: the library's 60 s
    std::vector<std::string> env;         // --env NAME[=VALUE]
    bool inherit_env = false;
};

// What a kernel's death costs, in the words of kernex run's note.
constexpr const char* state_lost = "its state (variables, imports) was lost";

int start_kernel(const kernel_args& args) {
    if (args.ready_timeout) check_seconds("--ready-timeout", *args.ready_timeout);
    // Block the signals before any thread starts so that every thread
    // inherits the mask and sigwait below receives them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    kernel_options options{.kernel_name = args.kernel};
    if (args.ready_timeout) options.ready_timeout = milliseconds_of(*args.ready_timeout);
    apply_env_flag(args.env, options);
    options.inherit_env = args.inherit_env;
    options.clean_exit_is_shutdown = true;  // other clients may shut it down, most without a broadcast
    if (!args.connection_file.empty()) options.connection_file = std::filesystem::absolute(args.connection_file);
    if (!args.docker_image.empty()) {
        options.docker.emplace();
        options.docker->image = args.docker_image;
        if (!args.work_dir.empty()) options.docker->work_dir = args.work_dir;
        apply_container_flags(args.container, *options.docker);
    }
    auto km = kernel_manager::start(options);
    // For `kernex kernel list` and `kernex kernel stop`; removed when this returns.
    kernel_record record(km.connection_file(), km.spec().name, km.pid());
    km.on_restarted([&record, &km] {
        record.set_kernel_pid(km.pid());  // kernel list shows the new process
        std::cerr << "kernex: the kernel died and was restarted: " << state_lost << "\n";
    });
    km.on_dead([] { std::cerr << "kernex: the kernel died and will not be restarted: " << state_lost << "; press Ctrl-C\n"; });
    // A client's shutdown_request ends us as Ctrl-C would (the main thread
    // is woken with SIGTERM, blocked and waited for below).
    std::atomic<bool> client_shut{false};
    const pthread_t main_thread = pthread_self();
    km.on_client_shutdown([&client_shut, main_thread, &record, &km](bool restarted) {
        if (restarted) {
            record.set_kernel_pid(km.pid());
            std::cerr << "kernex: a client restarted the kernel\n";
            return;
        }
        client_shut = true;
        pthread_kill(main_thread, SIGTERM);
    });
    std::cout << km.connection_file().string() << "\n" << std::flush;
    std::cerr << "kernex: kernel '" << km.spec().name << "' (pid " << km.pid()
              << (args.docker_image.empty() ? "" : ", in a container of " + args.docker_image) << ") is running.\n"
              << "kernex: attach with: jupyter console --existing " << km.connection_file().string() << "\n"
              << "kernex: Ctrl-C or SIGTERM shuts it down.\n";
    int sig = 0;
    sigwait(&signals, &sig);
    // Ctrl-C says "Interrupted", as it does in kernex run and exec.
    std::cerr << (client_shut      ? "kernex: a client shut the kernel down\n"
                  : sig == SIGINT ? "kernex: Interrupted: shutting the kernel down\n"
                                  : "kernex: shutting the kernel down\n");
    km.shutdown();
    return 0;
}

}  // namespace

command_runner add_kernel_command(CLI::App& app) {
    auto args = std::make_shared<kernel_args>();
    auto* cmd = app.add_subcommand("kernel", "Start, list, interrupt and stop kernels for other clients");
    cmd->require_subcommand(1);
    auto* start = cmd->add_subcommand("start",
                                      "Start a kernel, print its connection file path, and keep it running until\n"
                                      "SIGINT/SIGTERM, then shut it down cleanly; a client's shutdown_request (`exit` in\n"
                                      "jupyter console) ends it as cleanly, exit status 0; a client's restart restarts it");
    start->add_option("-k,--kernel", args->kernel, "Kernelspec name")->capture_default_str();
    start->add_option("-f,--connection-file", args->connection_file,
                      "Where to write the connection file (default: the Jupyter runtime dir)");
    auto* image = start->add_option("--docker-image", args->docker_image,
                                    "Run the kernel in a Docker container of this image (present in the daemon at\n"
                                    "$DOCKER_HOST: never pulled). Network none: the connection file and the ipc\n"
                                    "sockets are in a private dir that host clients can use as well");
    image->excludes("-f");
    start->add_option("--work-dir", args->work_dir,
                      "With --docker-image: the directory bound at /workspace (default: a temporary one)")
        ->needs(image);
    add_container_flags(start, args->container, image);
    start->add_option_function<double>(
        "--ready-timeout", [args](double seconds) { args->ready_timeout = seconds; },
        "Seconds to wait for the kernel to be ready (default 60), as kernex run's");
    add_env_flag(start, args->env);
    start->add_flag("--inherit-env", args->inherit_env, "The kernel gets kernex's whole environment, not a clean one");
    auto list_stop = add_kernel_list_stop(*cmd);  // kernel list, kernel stop: kernel_records.cpp
    auto requests = add_kernel_requests(*cmd);    // kernel interrupt, kernel shutdown: kernel_requests.cpp
    return [args, list_stop, requests] {
        if (auto status = list_stop()) return *status;
        if (auto status = requests()) return *status;
        return start_kernel(*args);
    };
}

}  // namespace kernex::cli
