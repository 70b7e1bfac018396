// Kernel names as jupyter_client treats them, shared by parsing and discovery.
#pragma once

#include <string>

namespace kernex {

// jupyter_client lower-cases directory names with str.lower(); kernex only
// folds ASCII, which covers every name Jupyter calls valid ([a-z0-9._-]).
inline std::string ascii_lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

}  // namespace kernex
