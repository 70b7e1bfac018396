// The approve hook's one implementation, shared by every executor's block
// loop: ask, record, say, and keep the human's time off the code's clock.
#include "executors/code_files.hpp"
#include "kernex/executor.hpp"

#include <cstdio>

namespace kernex {

namespace {

// The length of the hidden character at code[i] (see block_review), else 0.
std::size_t hidden_at(std::string_view code, std::size_t i) {
    const auto byte = [&](std::size_t k) { return k < code.size() ? static_cast<unsigned char>(code[k]) : 0u; };
    const unsigned c = byte(i);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) return 1;
    if (c == 0xc2 && byte(i + 1) >= 0x80 && byte(i + 1) <= 0x9f) return 2;  // C1: U+0080..U+009F
    if (c == 0xe2) {
        const unsigned b = byte(i + 1), d = byte(i + 2);
        // U+202A..U+202E, U+2066..U+2069
        if ((b == 0x80 && d >= 0xaa && d <= 0xae) || (b == 0x81 && d >= 0xa6 && d <= 0xa9)) return 3;
    }
    return 0;
}

}  // namespace

std::string printable_code(std::string_view code) {
    std::string out;
    out.reserve(code.size());
    char buf[16];
    for (std::size_t i = 0; i < code.size();) {
        const std::size_t n = hidden_at(code, i);
        if (n == 0) {
            out += code[i++];
            continue;
        }
        const auto b = [&](std::size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(code[i + k])); };
        if (n == 1) std::snprintf(buf, sizeof buf, "\\x%02x", b(0));
        else if (n == 2) std::snprintf(buf, sizeof buf, "\\u%04x", ((b(0) & 0x1f) << 6) | (b(1) & 0x3f));
        else std::snprintf(buf, sizeof buf, "\\u%04x", ((b(0) & 0x0f) << 12) | ((b(1) & 0x3f) << 6) | (b(2) & 0x3f));
        out += buf;
        i += n;
    }
    return out;
}

block_review review_block(const code_block& block, std::size_t index, std::size_t count) {
    std::size_t hidden = 0;
    for (std::size_t i = 0; i < block.code.size();) {
        const std::size_t n = hidden_at(block.code, i);
        hidden += n > 0;
        i += n > 0 ? n : 1;
    }
    return {.index = index, .count = count, .language = block.language, .code = block.code,
            .sha256 = detail::sha256_hex(block.code), .hidden_characters = hidden};
}

approval code_executor::approve_block(const std::vector<code_block>& blocks, std::size_t i, code_result& result,
                                      std::chrono::steady_clock::time_point& deadline,
                                      const std::function<void(const std::string&)>& say) {
    if (!m_approve) return approval::run;
    const auto name = [&](std::size_t k) {
        return "block " + std::to_string(k + 1) + " of " + std::to_string(blocks.size()) + " (" + blocks[k].language +
               ")";
    };
    block_review review = review_block(blocks[i], i, blocks.size());
    const auto asked = std::chrono::steady_clock::now();
    const approval answer = m_approve(review);
    deadline += std::chrono::steady_clock::now() - asked;
    switch (answer) {
    case approval::run:
        result.approvals.push_back({i, std::move(review.sha256), block_verdict::approved});
        return approval::run;
    case approval::skip:
        result.approvals.push_back({i, std::move(review.sha256), block_verdict::skipped});
        say("kernex: " + name(i) + " skipped: not approved, it did not run");
        return approval::skip;
    case approval::stop:
        break;
    }
    result.approvals.push_back({i, std::move(review.sha256), block_verdict::refused});
    for (std::size_t k = i + 1; k < blocks.size(); ++k)
        result.approvals.push_back({k, detail::sha256_hex(blocks[k].code), block_verdict::refused});
    const std::size_t after = blocks.size() - i - 1;
    say("kernex: " + name(i) + " refused: it" +
        (after == 0 ? std::string() : " and the " + std::to_string(after) + " block(s) after it") + " did not run");
    if (result.exit_code == 0) result.exit_code = 1;
    return approval::stop;
}

}  // namespace kernex
