// libFuzzer target for docker::unpack_beneath, which takes the tar a
// container's code shaped (GET /containers/{id}/archive in files "copy")
// into the work dir. The first byte of the input is the byte cap (in units
// of 64); the rest is the tar. Each input is unpacked into a fresh dir that
// sits beside a sentinel dir, and beyond "no crash" it traps when:
//  - an exception other than kernex::error(protocol_error) escapes;
//  - anything appears outside the dir (the sentinel dir stays empty);
//  - anything but regular files and directories is made in the dir;
//  - the file bytes written exceed the cap, or (when the tar was read to its
//    end) a file written is not among the names the report gives.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>

#include "docker/archive.hpp"
#include "kernex/error.hpp"

namespace fs = std::filesystem;

namespace {

void require(bool condition) {
    if (!condition) __builtin_trap();
}

const fs::path& base() {
    static const fs::path dir = [] {
        std::string pattern = (fs::temp_directory_path() / "kernex-fuzz-tar-XXXXXX").string();
        require(::mkdtemp(pattern.data()) != nullptr);
        fs::create_directory(fs::path(pattern) / "sentinel");
        return fs::path(pattern);
    }();
    return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint64_t cap = static_cast<std::uint64_t>(data[0]) * 64;
    const std::string_view tar(reinterpret_cast<const char*>(data + 1), size - 1);
    const fs::path dir = base() / "work";
    fs::remove_all(dir);
    fs::create_directory(dir);
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    require(fd >= 0);
    kernex::docker::unpack_report report;
    bool failed = false;  // files before the bad header stay, unreported
    try {
        report = kernex::docker::unpack_beneath(fd, tar, cap);
    } catch (const kernex::error& e) {
        require(e.code() == kernex::errc::protocol_error);
        failed = true;
    }
    ::close(fd);
    require(fs::is_empty(base() / "sentinel"));
    for (const auto& entry : fs::directory_iterator(base())) {
        const auto name = entry.path().filename().string();
        require(name == "sentinel" || name == "work");
    }
    const std::set<std::string> written(report.written.begin(), report.written.end());
    std::uint64_t bytes = 0;
    for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
        const auto st = it->symlink_status();
        require(st.type() == fs::file_type::regular || st.type() == fs::file_type::directory);
        if (st.type() == fs::file_type::regular) {
            bytes += fs::file_size(it->path());
            require(failed || written.count(it->path().lexically_relative(dir).generic_string()) == 1);
        }
    }
    require(bytes <= cap);
    return 0;
}
