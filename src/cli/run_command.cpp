// `kernex run`: the cells of one or more files, in order, in ONE kernel
// session. Cells are separated by lines starting with "# %%" (the percent
// format); outputs print as they stream; images and HTML are saved.
#include <unistd.h>

#include <iostream>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/container_flags.hpp"
#include "cli/run_notebook.hpp"
#include "cli/signal_forwarding.hpp"
#include "kernex/error.hpp"
#include "kernex/kernel_manager.hpp"
#include "kernex/output_files.hpp"
#include "kernex/remote_kernel.hpp"

namespace kernex::cli {

namespace {

struct run_args {
    std::string kernel = "python3";
    std::string existing;
    std::string gateway;        // else KERNEX_GATEWAY_URL
    std::string token;          // else KERNEX_GATEWAY_TOKEN; never printed
    std::string gateway_ca;
    std::string docker_image;   // run the kernel in a container of this image
    std::string work_dir;       // with docker_image: bound at /workspace
    container_flags container;  // with docker_image
    double timeout = 0;
    std::string output_dir = ".";
    bool keep_going = false;
    bool json_lines = false;
    bool sandbox = false;       // local kernel in the bubblewrap sandbox
    bool inherit_env = false;   // local kernel gets our whole environment
    std::size_t max_output_bytes = std::size_t{256} << 20;  // kept per cell, with --json
    std::vector<std::string> files;
};

}  // namespace

// Splits text into cells at lines that start with "# %%". Text before the
// first marker is a cell when it holds more than blank lines.
std::vector<std::string> split_cells(const std::string& text) {
    std::vector<std::string> cells;
    std::string current;
    auto flush = [&] {
        bool blank = current.find_first_not_of(" \t\r\n") == std::string::npos;
        if (!blank) cells.push_back(current);
        current.clear();
    };
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("# %%", 0) == 0) {
            flush();
            continue;
        }
        current += line;
        current += '\n';
    }
    flush();
    return cells;
}

namespace {

json output_to_json(const output& o) {
    return std::visit(
        [](const auto& v) -> json {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, outputs::stream>)
                return {{"type", "stream"}, {"name", v.name}, {"text", v.text}};
            else if constexpr (std::is_same_v<T, outputs::display_data>)
                return {{"type", "display_data"}, {"data", v.data}, {"metadata", v.metadata}};
            else if constexpr (std::is_same_v<T, outputs::update_display_data>)
                return {{"type", "update_display_data"}, {"data", v.data}, {"display_id", v.display_id}};
            else if constexpr (std::is_same_v<T, outputs::execute_result>)
                return {{"type", "execute_result"}, {"execution_count", v.execution_count}, {"data", v.data}};
            else if constexpr (std::is_same_v<T, outputs::error>)
                return {{"type", "error"}, {"ename", v.ename}, {"evalue", v.evalue}, {"traceback", v.traceback}};
            else
                return {{"type", "clear_output"}, {"wait", v.wait}};
        },
        o);
}

// Prints outputs as they arrive and saves rich ones.
class printer {
public:
    printer(const run_args& args) : m_args(args), m_color(::isatty(STDERR_FILENO)) {}

    void begin_cell(std::string stem) {
        m_stem = std::move(stem);
        m_saved.clear();
        m_count = 0;
    }

    void on_output(const output& o) {
        const json* data = nullptr;
        if (auto* d = std::get_if<outputs::display_data>(&o)) data = &d->data;
        if (auto* r = std::get_if<outputs::execute_result>(&o)) data = &r->data;
        if (data && has_file_output(*data)) {
            auto stem = m_stem + (m_count ? "-" + std::to_string(m_count) : "");
            ++m_count;
            for (auto& p : save_output_files(*data, m_args.output_dir, stem)) {
                m_saved.push_back(p.string());
                if (!m_args.json_lines) std::cout << "[saved " << p.string() << "]\n" << std::flush;
            }
            return;
        }
        if (m_args.json_lines) return;
        if (auto* s = std::get_if<outputs::stream>(&o)) {
            auto& out = s->name == "stderr" ? std::cerr : std::cout;
            out << s->text << std::flush;
        } else if (data && data->contains("text/plain")) {
            std::cout << (*data)["text/plain"].get<std::string>() << "\n" << std::flush;
        } else if (auto* e = std::get_if<outputs::error>(&o)) {
            for (const auto& line : e->traceback) std::cerr << (m_color ? line : strip_ansi(line)) << "\n";
            if (e->traceback.empty()) std::cerr << e->ename << ": " << e->evalue << "\n";
            std::cerr << std::flush;
        }
    }

    const std::vector<std::string>& saved() const { return m_saved; }

private:
    const run_args& m_args;
    bool m_color;
    std::string m_stem;
    std::vector<std::string> m_saved;
    int m_count = 0;
};

int run(const run_args& args) {
    std::optional<kernel_manager> km;
    std::optional<kernel_client> own_client;
    std::optional<remote_kernel> attached;
    kernel_client* kc = nullptr;
    auto gateway = gateway_options::from_arguments(args.gateway, args.token);
    if (gateway && !args.gateway_ca.empty()) gateway->ca_file = args.gateway_ca;
    if (gateway && !args.existing.empty() && !std::filesystem::exists(args.existing)) {
        // A kernel id on the server: used, not deleted at the end.
        attached.emplace(remote_kernel::attach(*gateway, args.existing));
        kc = &attached->client();
    } else if (!args.existing.empty()) {
        own_client.emplace(kernel_client::from_connection_file(args.existing));
        own_client->wait_for_ready(std::chrono::seconds(30));
        kc = &*own_client;
    } else {
        kernel_options ko;
        ko.kernel_name = args.kernel;
        ko.gateway = gateway;
        ko.inherit_env = args.inherit_env;
        if (args.sandbox) ko.sandbox.emplace();
        if (!args.docker_image.empty()) {
            if (gateway) throw error(errc::invalid_argument, "--docker-image and --gateway cannot be combined");
            ko.docker.emplace();
            ko.docker->image = args.docker_image;
            if (!args.work_dir.empty()) ko.docker->work_dir = args.work_dir;
            apply_container_flags(args.container, *ko.docker);
        }
        km.emplace(kernel_manager::start(ko));
        kc = &km->client();
    }

    // Ctrl-C (or SIGTERM, SIGHUP) interrupts the running cell, and the run
    // stops after it: kernex then shuts down the kernel it started instead
    // of dying and leaving it (and its connection file) behind.
    signal_forwarding forwarding([&](int) {
        if (km) km->interrupt();
        else if (attached) attached->interrupt();
        else kernel_client::from_connection_file(args.existing).interrupt_request(std::chrono::seconds(2));
    });

    printer out(args);
    int status = 0;
    for (const auto& file : args.files) {
        auto cells = split_cells(read_input(file));
        std::string base = file == "-" ? "stdin" : std::filesystem::path(file).stem().string();
        for (std::size_t i = 0; i < cells.size(); ++i) {
            if (forwarding.received()) return 130;  // between cells: run no more
            out.begin_cell(base + "-cell" + std::to_string(i + 1));
            execute_options eo;
            if (args.timeout > 0) eo.timeout = std::chrono::milliseconds(static_cast<long>(args.timeout * 1000));
            eo.on_output = [&](const output& o) { out.on_output(o); };
            // Printed as they arrive: only --json needs them kept (and sees
            // a notice among them when some were not).
            eo.max_output_bytes = args.json_lines ? args.max_output_bytes : 0;
            if (::isatty(STDIN_FILENO) && file != "-")
                eo.on_input = [](const input_request& r) {
                    std::cout << r.prompt << std::flush;
                    std::string line;
                    std::getline(std::cin, line);
                    return line;
                };
            auto r = kc->execute(cells[i], eo);
            if (args.json_lines) {
                json j{{"file", file},
                       {"cell", i + 1},
                       {"status", to_string(r.status)},
                       {"execution_count", r.execution_count},
                       {"elapsed_ms", std::chrono::duration<double, std::milli>(r.elapsed).count()},
                       {"saved", out.saved()},
                       {"outputs", json::array()}};
                for (const auto& o : r.outputs) j["outputs"].push_back(output_to_json(o));
                if (!r.note.empty()) j["note"] = r.note;
                if (r.restarted) j["restarted"] = true;
                std::cout << j.dump() << "\n" << std::flush;
            } else if (!r.note.empty()) {
                std::cerr << "kernex: " << file << " cell " << i + 1 << ": " << r.note << "\n";
            }
            if (r.status == execution_status::timeout) status = 124;
            else if (r.status != execution_status::ok && status == 0) status = 1;
            if (forwarding.received()) return 130;
            if (r.status != execution_status::ok && !args.keep_going) return status;
        }
    }
    return status;
}

}  // namespace

command_runner add_run_command(CLI::App& app) {
    auto args = std::make_shared<run_args>();
    auto* cmd = app.add_subcommand("run",
                                   "Run the cells of FILEs in order in one kernel session (state carries over).\n"
                                   "Cells are separated by lines starting with '# %%'; '-' reads stdin.\n"
                                   "Ctrl-C (SIGINT, SIGTERM, SIGHUP) interrupts the running cell and ends the run; the kernel is shut down.\n"
                                   "Exit status: 0 all ok, 1 a cell failed, 124 a cell timed out, 130 interrupted,\n"
                                   "2 usage/setup error.");
    auto* kernel = cmd->add_option("-k,--kernel", args->kernel, "Kernelspec name (see `kernex kernelspec list`)")
                       ->capture_default_str();
    cmd->add_option("--existing", args->existing,
                    "Connection file of a running kernel to use instead (with a gateway: a kernel id on the server)")
        ->excludes(kernel);
    cmd->add_option("--gateway", args->gateway,
                    "Run the kernel on this Jupyter Server / gateway (http[s]://host:port[/base]; "
                    "default $KERNEX_GATEWAY_URL)");
    cmd->add_option("--token", args->token, "The server's token (default $KERNEX_GATEWAY_TOKEN)");
    cmd->add_option("--gateway-ca", args->gateway_ca, "PEM file of the CAs to trust for an https gateway")
        ->check(CLI::ExistingFile);
    auto* image = cmd->add_option("--docker-image", args->docker_image,
                                  "Run the kernel in a Docker container of this image (present in the daemon at\n"
                                  "$DOCKER_HOST: never pulled; network none, only the work dir shared)");
    image->excludes("--existing");
    cmd->add_option("--work-dir", args->work_dir,
                    "With --docker-image: the directory bound at /workspace (default: a temporary one)")
        ->needs(image);
    add_container_flags(cmd, args->container, image);
    cmd->add_option("-t,--timeout", args->timeout, "Seconds per cell; a cell over it is interrupted (0: none)");
    cmd->add_option("-o,--output-dir", args->output_dir, "Where images and HTML outputs are saved (a notebook run: the notebook written)")
        ->capture_default_str();
    cmd->add_flag("--continue", args->keep_going, "Keep going after a failed cell");
    cmd->add_flag("--sandbox", args->sandbox, "Run the local kernel in a bubblewrap sandbox (no network, read-only system, ipc)");
    cmd->add_flag("--inherit-env", args->inherit_env, "The local kernel gets kernex's whole environment, not a clean one");
    cmd->add_flag("--json", args->json_lines, "Print one JSON object per cell instead of the outputs");
    cmd->add_option("--max-output-bytes", args->max_output_bytes,
                    "With --json: bytes of outputs kept per cell; the cell's outputs then end with a\n"
                    "stderr notice of how many were dropped (text mode prints everything as it arrives)")
        ->capture_default_str();
    cmd->add_option("files", args->files, "Files to run ('-' for stdin)")->required();
    auto notebook_run = add_notebook_run_options(*cmd);  // FILE.ipynb, or -o FILE.ipynb: see run_notebook.cpp
    return [args, notebook_run] {
        if (auto status = notebook_run()) return *status;
        return run(*args);
    };
}

}  // namespace kernex::cli
