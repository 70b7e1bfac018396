// libFuzzer target: connection files. Arbitrary bytes as a file's JSON must
// give either a connection_info or kernex::error, never a crash or another
// exception; an accepted one must survive to_json/from_json unchanged.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "kernex/connection.hpp"
#include "kernex/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto j = nlohmann::json::parse(data, data + size, nullptr, false);
    if (j.is_discarded()) return 0;
    try {
        auto info = kernex::connection_info::from_json(j, "fuzz.json");
        auto again = kernex::connection_info::from_json(info.to_json(), "fuzz.json");
        if (again.to_json() != info.to_json()) __builtin_trap();
        (void)info.shell_endpoint();
    } catch (const kernex::error&) {
    }
    return 0;
}
