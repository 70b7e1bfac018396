// Kernelspecs: finding installed Jupyter kernels the way Jupyter does.
// Search path: each $JUPYTER_PATH entry in order, then the user data dir
// ($JUPYTER_DATA_DIR, else ~/.local/share/jupyter), then
// /usr/local/share/jupyter and /usr/share/jupyter; in each, kernels/<name>/
// kernel.json. Names compare case-insensitively; the first found wins.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kernex {

enum class interrupt_mode { signal, message };

struct kernelspec {
    std::string name;                       // lower-case directory name
    std::filesystem::path resource_dir;     // the directory holding kernel.json
    std::vector<std::string> argv;
    std::string display_name;
    std::string language;
    kernex::interrupt_mode interrupt_mode = interrupt_mode::signal;
    std::map<std::string, std::string> env;
    nlohmann::json metadata = nlohmann::json::object();

    // argv with {connection_file} and {resource_dir} substituted.
    std::vector<std::string> render_argv(const std::filesystem::path& connection_file) const;
};

struct kernelspec_location {
    std::string name;
    std::filesystem::path resource_dir;
};

// The Jupyter data path, in search order, without duplicates.
std::vector<std::filesystem::path> jupyter_data_path();

// Every kernelspec found on the data path (first found per name wins), sorted by name.
std::vector<kernelspec_location> list_kernelspecs();

// Parses <resource_dir>/kernel.json. Throws kernex::error(invalid_argument)
// naming the file and what is wrong; (not_found) when it does not exist.
kernelspec load_kernelspec(const std::filesystem::path& resource_dir, std::string name = {});

// Finds a kernelspec by name (case-insensitive). Throws kernex::error(not_found)
// listing the available names and how to install one.
kernelspec find_kernelspec(std::string_view name);

}  // namespace kernex
