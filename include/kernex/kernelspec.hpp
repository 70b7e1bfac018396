// Kernelspecs: finding installed Jupyter kernels the way Jupyter does
// (jupyter_core 4.12 / jupyter_client 7.4 as Debian 12 ships them).
// Search path: each $JUPYTER_PATH entry in order, then the user data dir
// (jupyter_data_dir()), then Python's user-base data dir
// ($PYTHONUSERBASE, else ~/.local, + /share/jupyter; only when it differs and
// $PYTHONNOUSERSITE is unset), then /usr/local/share/jupyter and
// /usr/share/jupyter; in each, kernels/<name>/kernel.json. Last of all, as
// jupyter_client does when IPython is installed, the legacy IPython dir
// ($IPYTHONDIR, else ~/.ipython) + /kernels. Directory names are lower-cased
// (ASCII) and compare case-insensitively; the first found wins. Names outside
// Jupyter's rule ([a-z0-9._-]) are still listed, as jupyter_client does.
// Not modelled: jupyter_client's fallback to ipykernel's built-in python3
// spec, config files (KernelSpecManager.*), JUPYTER_PREFER_ENV_PATH and
// virtualenv prefixes.
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
    std::string name{};                     // lower-case directory name
    std::filesystem::path resource_dir{};   // the directory holding kernel.json
    std::vector<std::string> argv{};
    std::string display_name{};
    std::string language{};
    kernex::interrupt_mode interrupt_mode = interrupt_mode::signal;
    std::map<std::string, std::string> env{};
    nlohmann::json metadata = nlohmann::json::object();

    // argv with every {connection_file} (made absolute) and {resource_dir}
    // substituted, in one pass as jupyter_client does: substituted text is not
    // scanned again, other {words} are left as they are; argv[0] passes
    // through resolve_kernelspec_python.
    std::vector<std::string> render_argv(const std::filesystem::path& connection_file) const;
};

struct kernelspec_location {
    std::string name{};
    std::filesystem::path resource_dir{};
};

// The user's Jupyter data dir: $JUPYTER_DATA_DIR, else $XDG_DATA_HOME/jupyter,
// else <home>/.local/share/jupyter with home's symlinks resolved. Empty
// variables count as unset, as in jupyter_core.
std::filesystem::path jupyter_data_dir();

// The Jupyter data path, in search order, without duplicates.
std::vector<std::filesystem::path> jupyter_data_path();

// The directories searched for kernelspecs, in order: <data path>/kernels,
// then the IPython dir's kernels.
std::vector<std::filesystem::path> kernelspec_dirs();

// Every kernelspec found (first found per name wins), sorted by name.
// Directories without a kernel.json are skipped; kernel.json is not parsed.
std::vector<kernelspec_location> list_kernelspecs();

// jupyter_client runs a kernelspec whose argv[0] is `python`, `python3` or
// `python3.N` with its own interpreter (sys.executable), not whatever PATH
// finds (Debian's octave_kernel spec says "python"). kernex resolves such an
// argv[0] to the interpreter owning the kernelspec's tree: for
// <prefix>/share/jupyter/kernels/<name>, <prefix>/bin/<argv[0]> or else
// <prefix>/bin/python3 (so /usr/share/jupyter gives /usr/bin/python3, a
// virtualenv's spec its own Python); for a spec elsewhere, or when neither
// exists, /usr/bin/python3 (Debian's jupyter_client's); failing that argv[0]
// is left as it is. $KERNEX_KERNELSPEC_PYTHON=off turns this off (PATH
// decides, as before); set to a path, that interpreter is used. Any other
// argv[0] is returned unchanged.
std::string resolve_kernelspec_python(const std::filesystem::path& resource_dir, const std::string& argv0);

// Parses <resource_dir>/kernel.json; name defaults to the directory's name,
// lower-cased. argv is required (a non-empty list of strings); display_name,
// language (strings), interrupt_mode ("signal" or "message", any case),
// env (strings to strings) and metadata (an object) are optional; unknown
// fields are ignored. Throws kernex::error(invalid_argument) naming the file
// and what is wrong; (not_found) when it does not exist; (io_error) when it
// cannot be read.
kernelspec load_kernelspec(const std::filesystem::path& resource_dir, std::string name = {});

// Finds a kernelspec by name (case-insensitive) and loads it. Throws
// kernex::error(not_found) listing the available names and how to install
// one; load_kernelspec's errors for a broken kernel.json.
kernelspec find_kernelspec(std::string_view name);

}  // namespace kernex
