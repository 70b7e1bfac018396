// `kernex kernelspec list`: the installed kernels, printed exactly as
// `jupyter kernelspec list` prints them so that either can be read the same way;
// with --gateway (or $KERNEX_GATEWAY_URL), the kernels a Jupyter Server offers.
#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "kernex/error.hpp"
#include "kernex/gateway.hpp"
#include "kernex/kernelspec.hpp"

namespace fs = std::filesystem;

namespace kernex::cli {
namespace {

struct listed_spec {
    kernelspec_location location;
    std::optional<kernelspec> spec;  // empty when kernel.json is broken
};

// Loads every spec; jupyter warns about a broken kernel.json and goes on.
std::vector<listed_spec> load_all() {
    std::vector<listed_spec> specs;
    for (kernelspec_location& location : list_kernelspecs()) {
        listed_spec entry{std::move(location), std::nullopt};
        try {
            entry.spec = load_kernelspec(entry.location.resource_dir, entry.location.name);
        } catch (const error& e) {
            std::cerr << "kernex: warning: skipping kernelspec '" << entry.location.name << "': " << e.what()
                      << "\n";
        }
        specs.push_back(std::move(entry));
    }
    return specs;
}

// Python pads by code points, not bytes.
std::size_t display_length(const std::string& utf8) {
    std::size_t n = 0;
    for (unsigned char c : utf8) n += (c & 0xC0) != 0x80;
    return n;
}

// jupyter_client's order: by the first data path entry the directory starts
// with (as text, as Python's startswith), then by path; directories outside
// the data path (IPython's) come first.
std::vector<const kernelspec_location*> in_listing_order(const std::vector<listed_spec>& specs) {
    const std::vector<fs::path> data_path = jupyter_data_path();
    auto rank = [&](const kernelspec_location* loc) {
        const std::string dir = loc->resource_dir.string();
        for (std::size_t i = 0; i < data_path.size(); ++i)
            if (dir.starts_with(data_path[i].string())) return std::make_pair(static_cast<long>(i), dir);
        return std::make_pair(-1L, dir);
    };
    std::vector<const kernelspec_location*> order;
    for (const listed_spec& s : specs) order.push_back(&s.location);
    std::stable_sort(order.begin(), order.end(), [&](auto* a, auto* b) { return rank(a) < rank(b); });
    return order;
}

int print_table(const std::vector<listed_spec>& specs) {
    bool any_loaded = std::any_of(specs.begin(), specs.end(), [](const listed_spec& s) { return s.spec.has_value(); });
    if (!any_loaded) {
        std::cout << "No kernels available\n";
        return 0;
    }
    std::size_t width = 0;
    for (const listed_spec& s : specs) width = std::max(width, display_length(s.location.name));
    std::cout << "Available kernels:\n";
    for (const kernelspec_location* loc : in_listing_order(specs))
        std::cout << "  " << loc->name << std::string(width - display_length(loc->name), ' ') << "    "
                  << loc->resource_dir.string() << "\n";
    return 0;
}

int print_json(const std::vector<listed_spec>& specs) {
    nlohmann::ordered_json all = nlohmann::ordered_json::object();
    for (const listed_spec& s : specs) {
        if (!s.spec) continue;
        const kernelspec& k = *s.spec;
        // jupyter_client's KernelSpec.to_dict(), field for field.
        nlohmann::ordered_json spec;
        spec["argv"] = k.argv;
        spec["env"] = nlohmann::ordered_json(k.env);
        spec["display_name"] = k.display_name;
        spec["language"] = k.language;
        spec["interrupt_mode"] = k.interrupt_mode == interrupt_mode::message ? "message" : "signal";
        spec["metadata"] = nlohmann::ordered_json::parse(k.metadata.dump());
        all[k.name] = {{"resource_dir", k.resource_dir.string()}, {"spec", std::move(spec)}};
    }
    nlohmann::ordered_json out;
    out["kernelspecs"] = std::move(all);
    // Python's json.dumps escapes non-ASCII by default; so does this.
    std::cout << out.dump(2, ' ', true, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    return 0;
}

struct gateway_args {
    std::string url;
    std::string token;
    std::string token_file;
    std::string ca;
};

// The server's kernelspecs: name and display name (there is no local
// directory), or with --json the server's answer as it is.
int print_remote(const gateway_options& options, bool as_json) {
    gateway_client gc(options);
    remote_kernelspecs specs = gc.kernelspecs();
    if (as_json) {
        std::cout << specs.raw.dump(2, ' ', true, nlohmann::json::error_handler_t::replace) << "\n";
        return 0;
    }
    if (specs.specs.empty()) {
        std::cout << "No kernels available on " << gc.display_url() << "\n";
        return 0;
    }
    std::size_t width = 0;
    for (const kernelspec& k : specs.specs) width = std::max(width, display_length(k.name));
    std::cout << "Available kernels on " << gc.display_url()
              << (specs.default_name.empty() ? "" : " (default: " + specs.default_name + ")") << ":\n";
    for (const kernelspec& k : specs.specs)
        std::cout << "  " << k.name << std::string(width - display_length(k.name), ' ') << "    " << k.display_name
                  << "\n";
    return 0;
}

}  // namespace

command_runner add_kernelspec_command(CLI::App& app) {
    CLI::App* kernelspec_cmd = app.add_subcommand(
        "kernelspec", "Inspect the installed Jupyter kernelspecs (the kernels kernex can start).");
    kernelspec_cmd->require_subcommand(1);
    CLI::App* list = kernelspec_cmd->add_subcommand(
        "list", "List the installed kernelspecs: names and directories, as `jupyter kernelspec list` does.");
    list->footer(
        "Searched in order, the first found per name winning (names compare case-insensitively):\n"
        "each $JUPYTER_PATH entry, the user data dir ($JUPYTER_DATA_DIR, else $XDG_DATA_HOME/jupyter,\n"
        "else ~/.local/share/jupyter), Python's user base ($PYTHONUSERBASE, else ~/.local)\n"
        "/share/jupyter, /usr/local/share/jupyter, /usr/share/jupyter (each + /kernels/<name>/kernel.json), then $IPYTHONDIR/kernels\n"
        "(else ~/.ipython/kernels). A broken kernel.json is listed, warned about on stderr and\n"
        "left out of --json.");
    auto json_output = std::make_shared<bool>(false);
    list->add_flag("--json", *json_output,
                   "Print {\"kernelspecs\": {name: {\"resource_dir\", \"spec\"}}} as JSON, as "
                   "`jupyter kernelspec list --json` does");
    auto gateway = std::make_shared<gateway_args>();
    list->add_option("--gateway", gateway->url,
                     "List the kernelspecs of this Jupyter Server / gateway instead (default $KERNEX_GATEWAY_URL)");
    auto* token = list->add_option("--token", gateway->token, token_help);
    list->add_option("--token-file", gateway->token_file, token_file_help)->excludes(token);
    list->add_option("--gateway-ca", gateway->ca, "PEM file of the CAs to trust for an https gateway")
        ->check(CLI::ExistingFile);
    return [json_output, gateway]() {
        if (!gateway->token_file.empty()) gateway->token = read_token_file(gateway->token_file);
        if (auto options = gateway_options::from_arguments(gateway->url, gateway->token)) {
            if (!gateway->ca.empty()) options->ca_file = gateway->ca;
            return print_remote(*options, *json_output);
        }
        const std::vector<listed_spec> specs = load_all();
        return *json_output ? print_json(specs) : print_table(specs);
    };
}

}  // namespace kernex::cli
