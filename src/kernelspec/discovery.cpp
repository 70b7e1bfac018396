// Finding kernelspecs on the Jupyter data path, first found per name winning.
#include <algorithm>
#include <set>
#include <system_error>

#include "kernelspec/kernelspec_names.hpp"
#include "kernex/error.hpp"
#include "kernex/kernelspec.hpp"

namespace fs = std::filesystem;

namespace kernex {
namespace {

// jupyter_client's _is_kernel_dir: a directory holding a kernel.json file
// (both followed through symlinks).
bool is_kernel_dir(const fs::path& dir) {
    std::error_code ec;
    return fs::is_directory(dir, ec) && fs::is_regular_file(dir / "kernel.json", ec);
}

// The kernelspecs directly inside one kernels/ directory, keyed by lower-cased
// name. Sorted so that two names differing only in case resolve the same way
// on every run (jupyter_client leaves that to readdir order). An unreadable
// directory holds no kernels rather than failing the whole listing.
std::vector<kernelspec_location> kernels_in(const fs::path& kernels_dir) {
    std::vector<fs::path> entries;
    std::error_code ec;
    for (fs::directory_iterator it(kernels_dir, ec), end; !ec && it != end; it.increment(ec))
        entries.push_back(it->path());
    std::sort(entries.begin(), entries.end());
    std::vector<kernelspec_location> found;
    for (const fs::path& entry : entries)
        if (is_kernel_dir(entry)) found.push_back({ascii_lower(entry.filename().string()), entry});
    return found;
}

}  // namespace

std::vector<kernelspec_location> list_kernelspecs() {
    std::vector<kernelspec_location> result;
    std::set<std::string> seen;
    for (const fs::path& dir : kernelspec_dirs())
        for (kernelspec_location& loc : kernels_in(dir))
            if (seen.insert(loc.name).second) result.push_back(std::move(loc));
    std::sort(result.begin(), result.end(),
              [](const kernelspec_location& a, const kernelspec_location& b) { return a.name < b.name; });
    return result;
}

kernelspec find_kernelspec(std::string_view name) {
    const std::string wanted = ascii_lower(std::string(name));
    const std::vector<fs::path> dirs = kernelspec_dirs();
    for (const fs::path& dir : dirs)
        for (kernelspec_location& loc : kernels_in(dir))
            if (loc.name == wanted) return load_kernelspec(loc.resource_dir, std::move(loc.name));

    std::string available;
    for (const kernelspec_location& loc : list_kernelspecs())
        available += (available.empty() ? "" : ", ") + loc.name;
    std::string searched;
    for (const fs::path& dir : dirs) searched += "\n  " + dir.string();
    throw error(errc::not_found,
                "no kernelspec named '" + std::string(name) + "'. " +
                    (available.empty() ? std::string("No kernelspecs are installed.")
                                       : "Available: " + available + ".") +
                    "\nTo install the Python kernel: apt-get install python3-ipykernel (system-wide), or "
                    "python3 -m ipykernel install --user; for other kernels, put "
                    "<name>/kernel.json into one of the directories searched:" +
                    searched);
}

}  // namespace kernex
