#include "kernex/executor.hpp"

namespace kernex {

namespace {

// The length of the well-formed UTF-8 sequence at s[i], or 0 when there is
// none (a stray continuation byte, an overlong form, a surrogate, a
// character cut off by the end of the text).
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char b = byte(i);
    if (b < 0x80) return 1;
    std::size_t n;
    unsigned char lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
    if (b >= 0xc2 && b <= 0xdf) n = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        n = 3;
        if (b == 0xe0) lo = 0xa0;
        if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4;
        if (b == 0xf0) lo = 0x90;
        if (b == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (i + n > s.size()) return 0;
    if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k)
        if ((byte(i + k) & 0xc0) != 0x80) return 0;
    return n;
}

std::string valid_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = utf8_sequence(s, i);
        if (n == 0) {
            out += "\xef\xbf\xbd";  // U+FFFD
            ++i;
        } else {
            out.append(s, i, n);
            i += n;
        }
    }
    return out;
}

nlohmann::json path_list(const std::vector<std::filesystem::path>& paths) {
    nlohmann::json list = nlohmann::json::array();
    std::error_code ec;
    for (const auto& p : paths) list.push_back(valid_utf8(std::filesystem::absolute(p, ec).string()));
    return list;
}

const char* verdict_name(block_verdict v) {
    switch (v) {
    case block_verdict::approved: return "approved";
    case block_verdict::skipped: return "skipped";
    case block_verdict::refused: return "refused";
    }
    return "refused";
}

}  // namespace

code_result code_executor::no_blocks(const output_handler& on_output) {
    code_result result;
    result.output = "kernex: no code blocks in the message\n";
    if (on_output) on_output(result.output);
    return result;
}

nlohmann::json code_result::to_json() const {
    nlohmann::json verdicts = nlohmann::json::array();
    for (const auto& a : approvals)
        verdicts.push_back({{"index", a.index}, {"sha256", a.sha256}, {"verdict", verdict_name(a.verdict)}});
    nlohmann::json j{
        {"exit_code", exit_code},
        {"blocks", blocks},
        {"output", valid_utf8(output)},
        {"code_files", path_list(code_files)},
        {"output_files", path_list(output_files)},
        {"timed_out", timed_out},
        {"truncated", truncated},
        {"approvals", std::move(verdicts)},
        {"notes", notes},
    };
    if (full_output_file) j["full_output_file"] = valid_utf8(std::filesystem::absolute(*full_output_file).string());
    if (temporary_work_dir) j["temporary_work_dir"] = true;
    return j;
}

}  // namespace kernex
