// libFuzzer target: extract_code_blocks on arbitrary text. It must never
// crash, and what it returns must be consistent: every block's code is text
// that occurs in the input (after CRLF normalisation and de-indentation it
// cannot be longer than the input), and languages are lower case.
#include <cctype>
#include <cstdint>
#include <string_view>

#include "kernex/executor.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto blocks = kernex::extract_code_blocks(text, "python");
    for (const auto& b : blocks) {
        if (b.code.size() > text.size()) __builtin_trap();
        if (b.language.empty()) __builtin_trap();  // inference always gives one
        for (unsigned char c : b.language)
            if (std::isupper(c)) __builtin_trap();
    }
    return 0;
}
