// What `display FILE` shows: the file's content as a Jupyter mime bundle,
// chosen by the file's magic bytes (PNG, JPEG, GIF) or its name (SVG, HTML).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace kernex::bash {

struct display_content {
    nlohmann::json data = nlohmann::json::object();  // mime type -> content (base64 for binary)
    std::string error;                               // why nothing can be shown, if data is empty
};

// Reads `path` and builds its bundle; error says why when it cannot
// (unreadable, too large, a type it does not show).
display_content load_display_file(const std::string& path);

std::string base64_encode(std::string_view bytes);

}  // namespace kernex::bash
