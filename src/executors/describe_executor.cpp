// describe_executor: what a model must know to use an executor, said once,
// as the reference frameworks put it in their executor agent's system
// message. Read from the config alone: nothing is started.
#include <cstdio>

#include "executors/code_files.hpp"
#include "executors/executor_config.hpp"
#include "kernex/docker_executor.hpp"
#include "kernex/error.hpp"
#include "kernex/kernelspec.hpp"
#include "kernex/local_executor.hpp"

namespace kernex {

namespace {

std::string language_list(const std::vector<std::vector<std::string>>& languages) {
    std::string out;
    for (const auto& names : languages) {
        out.append(out.empty() ? "" : ", ").append(names[0]);
        for (std::size_t i = 1; i < names.size(); ++i)
            out.append(i == 1 ? " (" : ", ").append(names[i]).append(i + 1 == names.size() ? ")" : "");
    }
    return out;
}

std::string limits(const detail::executor_config& c) {
    // A year or more (kernex exec's "no --total-timeout") is no limit worth saying.
    constexpr std::chrono::milliseconds none{std::chrono::hours(24 * 365)};
    const auto timeout = c.seconds("timeout").value_or(std::chrono::milliseconds(60'000));
    const auto block = c.seconds("block_timeout");
    const auto cap = c.count("max_output").value_or(std::uint64_t{1} << 20);
    std::string text = "Limits: ";
    if (block) text += detail::seconds_text(*block) + " per block";
    if (timeout < none) text += (block ? ", " : "") + detail::seconds_text(timeout) + " for all the blocks of one message together";
    if (!block && timeout >= none) text += "no time limit";
    return text + " (then the code is stopped); of output beyond " + std::to_string(cap) +
           " bytes the start and the end are kept, and a notice between them says how much was dropped.\n";
}

const char* how =
    "You can run code: write it in fenced markdown code blocks labelled with their language (```python ... ```). "
    "The blocks of your message run in order, stopping at the first that fails, and you get their output and "
    "exit code.\n";

}  // namespace

std::string describe_executor(const nlohmann::json& config) {
    if (!config.is_object() || !config.contains("executor") || !config["executor"].is_string())
        throw error(errc::invalid_argument, "an executor config is a JSON object with \"executor\": local, jupyter or docker");
    const std::string kind = config["executor"].get<std::string>();
    const detail::executor_config c(config, kind);
    const auto work_dir = c.string("work_dir");
    std::string text = how;
    if (kind == "local" || kind == "docker") {
        const bool local = kind == "local";
        text += "Languages: " + language_list(local ? local_executor::languages() : docker_executor::languages()) + ".\n";
        if (local) {
            text += "Each block runs as a new process on this machine";
            if (c.boolean("sandbox").value_or(false))
                text += ", in a sandbox (no network, the system read-only, only the work dir writable)";
            text += c.boolean("inherit_env").value_or(false)
                        ? "; it gets kernex's whole environment.\n"
                        : "; it gets a clean environment (no API keys or tokens).\n";
        } else {
            const std::string image = c.string("image").value_or("python:3-slim");
            const std::string network = c.string("network_mode").value_or("none");
            text += "Each block runs in a Docker container of the image " + image + " (network: " + network +
                    (network == "none" ? ", so nothing can be downloaded" : "") +
                    "), with the work dir at /workspace, the current directory.\n";
        }
        text += work_dir ? "Work dir: " + *work_dir + "; files written there stay, across messages.\n"
                         : std::string("Work dir: a temporary directory for each message, removed after it.\n");
        text += "State does not persist: variables, imports and definitions are gone after each block; only files "
                "in the work dir remain. Make each block complete.\n";
        text += limits(c);
        text += "To save a block under a name, make its first line a comment \"# filename: NAME\" (a name inside "
                "the work dir).\n";
        return text;
    }
    if (kind == "jupyter") {
        std::string where;
        std::string language;
        if (auto v = c.string("connection_file")) where = "an existing kernel (" + *v + ")";
        else if (auto g = c.string("gateway_url")) where = "a kernel on the Jupyter Server " + *g;
        else {
            const std::string name = c.string("kernel_name").value_or("python3");
            where = "a " + name + " kernel";
            if (auto image = c.string("docker_image")) where += " in a Docker container of the image " + *image;
            try {
                language = find_kernelspec(name).language;
            } catch (const error&) {
                // Not installed here: the text says less, the executor will say why.
            }
        }
        text += "The blocks run as cells in one Jupyter session: " + where + ".\n";
        text += language.empty() ? "Label the blocks with the kernel's language.\n"
                                 : "Language: " + language + " (label the blocks " + language + ").\n";
        text += "State persists: variables, imports and definitions stay from one block to the next and across "
                "messages, until the kernel is restarted; build on what earlier blocks defined.\n";
        if (work_dir) text += "Work dir: " + *work_dir + ".\n";
        text += limits(c);
        text += "Images and HTML outputs are saved as files; the output gives their paths.\n";
        return text;
    }
    throw error(errc::invalid_argument, "unknown executor '" + kind + "'; valid executors: local, jupyter, docker");
}

}  // namespace kernex
