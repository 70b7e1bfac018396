// Where Jupyter keeps its data, computed the way jupyter_core.paths does so
// that kernex finds exactly the kernels `jupyter kernelspec list` shows.
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <system_error>

#include "kernex/kernelspec.hpp"

namespace fs = std::filesystem;

namespace kernex {
namespace {

// jupyter_core treats an empty variable as unset (it tests truthiness).
const char* env_or_null(const char* name) {
    const char* value = std::getenv(name);
    return value && *value ? value : nullptr;
}

// os.path.expanduser("~"): $HOME, else the password database.
std::string unresolved_home() {
    if (const char* home = env_or_null("HOME")) return home;
    if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir) return pw->pw_dir;
    return "/";
}

// jupyter_core resolves symlinks in the home dir (Path.resolve, non-strict).
fs::path resolved_home() {
    std::error_code ec;
    fs::path home = fs::weakly_canonical(unresolved_home(), ec);
    return ec ? fs::path(unresolved_home()) : home;
}

// Python's site.ENABLE_USER_SITE: off with -s/PYTHONNOUSERSITE or setuid.
bool python_user_site_enabled() {
    if (env_or_null("PYTHONNOUSERSITE")) return false;
    return getuid() == geteuid() && getgid() == getegid();
}

// Python keeps the path text as given, without a trailing separator.
std::string strip_trailing_slashes(std::string entry) {
    while (!entry.empty() && entry.back() == '/') entry.pop_back();
    return entry;
}

}  // namespace

fs::path jupyter_data_dir() {
    if (const char* dir = env_or_null("JUPYTER_DATA_DIR")) return dir;
    if (const char* xdg = env_or_null("XDG_DATA_HOME")) return fs::path(xdg) / "jupyter";
    return resolved_home() / ".local" / "share" / "jupyter";
}

std::vector<fs::path> jupyter_data_path() {
    std::vector<fs::path> paths;
    auto add = [&](const fs::path& p) {
        if (std::find(paths.begin(), paths.end(), p) == paths.end()) paths.push_back(p);
    };
    if (const char* jupyter_path = env_or_null("JUPYTER_PATH")) {
        std::string_view rest = jupyter_path;
        for (;;) {
            auto colon = rest.find(':');
            add(strip_trailing_slashes(std::string(rest.substr(0, colon))));
            if (colon == std::string_view::npos) break;
            rest.remove_prefix(colon + 1);
        }
    }
    add(jupyter_data_dir());
    if (python_user_site_enabled()) {
        // site.getuserbase(): not resolved, unlike the data dir above.
        const char* base = env_or_null("PYTHONUSERBASE");
        add((base ? fs::path(base) : fs::path(unresolved_home()) / ".local") / "share" / "jupyter");
    }
    // sys.prefix/share/jupyter is /usr/share/jupyter for Debian's python3,
    // which the system entries below already hold.
    add("/usr/local/share/jupyter");
    add("/usr/share/jupyter");
    return paths;
}

std::vector<fs::path> kernelspec_dirs() {
    std::vector<fs::path> dirs;
    for (const fs::path& p : jupyter_data_path()) dirs.push_back(p / "kernels");
    // jupyter_client appends IPython's legacy kernels dir when IPython is
    // importable, which it is wherever Debian's ipykernel is installed.
    const char* ipython_dir = std::getenv("IPYTHONDIR");
    fs::path ipython = ipython_dir ? fs::path(ipython_dir) : resolved_home() / ".ipython";
    if (ipython.empty()) ipython = ".";
    dirs.push_back(ipython.lexically_normal() / "kernels");
    return dirs;
}

}  // namespace kernex
