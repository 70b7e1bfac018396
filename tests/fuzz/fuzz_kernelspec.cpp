// libFuzzer target: kernel.json parsing. Arbitrary bytes as a kernelspec
// must give a kernelspec or kernex::error, never a crash or another
// exception; argv rendering of an accepted one must not fail either.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "kernex/error.hpp"
#include "kernex/kernelspec.hpp"

namespace {

const std::filesystem::path& spec_dir() {
    static const std::filesystem::path dir = [] {
        auto d = std::filesystem::temp_directory_path() / ("kernex-fuzz-kernelspec-" + std::to_string(::getpid()));
        std::filesystem::create_directories(d);
        return d;
    }();
    return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto file = spec_dir() / "kernel.json";
    if (FILE* f = std::fopen(file.c_str(), "wb")) {
        std::fwrite(data, 1, size, f);
        std::fclose(f);
    }
    try {
        auto spec = kernex::load_kernelspec(spec_dir(), "fuzz");
        auto argv = spec.render_argv("/tmp/kernel-fuzz.json");
        if (argv.size() != spec.argv.size()) __builtin_trap();
    } catch (const kernex::error&) {
    }
    return 0;
}
