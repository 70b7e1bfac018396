// kernel.json parsing and argv templating.
#include "kernex/kernelspec.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "kernelspec/kernelspec_names.hpp"
#include "kernex/error.hpp"

namespace fs = std::filesystem;

namespace kernex {
namespace {

using json = nlohmann::json;

constexpr std::string_view connection_placeholder = "{connection_file}";
constexpr std::string_view resource_placeholder = "{resource_dir}";

[[noreturn]] void fail(const fs::path& file, const std::string& what) {
    throw error(errc::invalid_argument, "kernelspec " + file.string() + ": " + what);
}

std::string optional_string(const json& spec, const char* field, const fs::path& file) {
    auto it = spec.find(field);
    if (it == spec.end() || it->is_null()) return {};
    if (!it->is_string()) fail(file, std::string("\"") + field + "\" must be a string, not " + it->type_name());
    return it->get<std::string>();
}

std::vector<std::string> parse_argv(const json& spec, const fs::path& file) {
    auto it = spec.find("argv");
    if (it == spec.end()) fail(file, "\"argv\" is missing (the command that starts the kernel)");
    if (!it->is_array()) fail(file, std::string("\"argv\" must be a list of strings, not ") + it->type_name());
    if (it->empty()) fail(file, "\"argv\" is empty (it must name the command that starts the kernel)");
    std::vector<std::string> argv;
    for (std::size_t i = 0; i < it->size(); ++i) {
        const json& arg = (*it)[i];
        if (!arg.is_string())
            fail(file, "\"argv\"[" + std::to_string(i) + "] must be a string, not " + arg.type_name());
        argv.push_back(arg.get<std::string>());
    }
    return argv;
}

// Case-insensitive, like jupyter_client's CaselessStrEnum.
interrupt_mode parse_interrupt_mode(const json& spec, const fs::path& file) {
    auto it = spec.find("interrupt_mode");
    if (it == spec.end() || it->is_null()) return interrupt_mode::signal;
    const std::string given = optional_string(spec, "interrupt_mode", file);
    const std::string mode = ascii_lower(given);
    if (mode == "signal") return interrupt_mode::signal;
    if (mode == "message") return interrupt_mode::message;
    fail(file, "\"interrupt_mode\" must be \"signal\" or \"message\", not \"" + given + "\"");
}

std::map<std::string, std::string> parse_env(const json& spec, const fs::path& file) {
    std::map<std::string, std::string> env;
    auto it = spec.find("env");
    if (it == spec.end() || it->is_null()) return env;
    if (!it->is_object()) fail(file, std::string("\"env\" must be an object, not ") + it->type_name());
    for (const auto& [key, value] : it->items()) {
        if (!value.is_string())
            fail(file, "\"env\".\"" + key + "\" must be a string, not " + value.type_name());
        env.emplace(key, value.get<std::string>());
    }
    return env;
}

// "python", "python3", "python3.11": the names jupyter_client replaces.
bool is_bare_python(std::string_view name) {
    if (!name.starts_with("python")) return false;
    name.remove_prefix(6);
    if (name.empty()) return true;
    if (name.front() != '3') return false;
    name.remove_prefix(1);
    if (name.empty()) return true;
    if (name.front() != '.' || name.size() < 2) return false;
    return name.substr(1).find_first_not_of("0123456789") == std::string_view::npos;
}

bool is_executable_file(const fs::path& path) {
    std::error_code ec;
    return fs::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

std::string resolve_kernelspec_python(const fs::path& resource_dir, const std::string& argv0) {
    if (!is_bare_python(argv0)) return argv0;
    const char* setting = std::getenv("KERNEX_KERNELSPEC_PYTHON");
    const std::string_view chosen = setting ? setting : "";
    if (chosen == "off") return argv0;
    if (!chosen.empty()) return std::string(chosen);
    // <prefix>/share/jupyter/kernels/<name>: the interpreter of <prefix>.
    const fs::path kernels = resource_dir.lexically_normal().parent_path();
    const fs::path jupyter = kernels.parent_path();
    const fs::path share = jupyter.parent_path();
    if (kernels.filename() == "kernels" && jupyter.filename() == "jupyter" && share.filename() == "share") {
        const fs::path bin = share.parent_path() / "bin";
        for (const fs::path& candidate : {bin / argv0, bin / "python3"})
            if (is_executable_file(candidate)) return candidate.string();
    }
    // Elsewhere (the user's data dir, JUPYTER_PATH, the IPython dir): the
    // system's Python, whose jupyter_client Debian ships.
    if (is_executable_file("/usr/bin/python3")) return "/usr/bin/python3";
    return argv0;
}

kernelspec load_kernelspec(const fs::path& resource_dir, std::string name) {
    const fs::path file = resource_dir / "kernel.json";
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR) throw error(errc::not_found, "kernelspec " + file.string() + " does not exist");
        throw error(errc::io_error, "cannot read kernelspec " + file.string() + ": " + std::strerror(err));
    }
    json spec;
    try {
        spec = json::parse(in);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number too large
        fail(file, std::string("not valid JSON: ") + e.what());
    }
    if (!spec.is_object()) fail(file, std::string("must hold a JSON object, not ") + spec.type_name());

    kernelspec ks;
    ks.name = name.empty() ? ascii_lower(resource_dir.filename().string()) : std::move(name);
    ks.resource_dir = resource_dir;
    ks.argv = parse_argv(spec, file);
    ks.display_name = optional_string(spec, "display_name", file);
    ks.language = optional_string(spec, "language", file);
    ks.interrupt_mode = parse_interrupt_mode(spec, file);
    ks.env = parse_env(spec, file);
    if (auto it = spec.find("metadata"); it != spec.end() && !it->is_null()) {
        if (!it->is_object()) fail(file, std::string("\"metadata\" must be an object, not ") + it->type_name());
        ks.metadata = *it;
    }
    return ks;
}

std::vector<std::string> kernelspec::render_argv(const fs::path& connection_file) const {
    const std::string connection = fs::absolute(connection_file).string();
    const std::string resources = resource_dir.string();
    std::vector<std::string> rendered;
    rendered.reserve(argv.size());
    for (const std::string& arg : argv) {
        // One left-to-right pass, so a path that itself contains
        // "{resource_dir}" is never expanded a second time.
        std::string out;
        std::string_view rest = arg;
        while (!rest.empty()) {
            if (rest.starts_with(connection_placeholder)) {
                out += connection;
                rest.remove_prefix(connection_placeholder.size());
            } else if (rest.starts_with(resource_placeholder)) {
                out += resources;
                rest.remove_prefix(resource_placeholder.size());
            } else {
                out += rest.front();
                rest.remove_prefix(1);
            }
        }
        rendered.push_back(std::move(out));
    }
    // At launch, as jupyter_client's format_kernel_cmd: argv itself stays as
    // kernel.json says (`kernelspec list --json` shows what jupyter_client shows).
    if (!rendered.empty()) rendered.front() = resolve_kernelspec_python(resource_dir, rendered.front());
    return rendered;
}

}  // namespace kernex
