// The approve hook's one implementation, shared by every executor's block
// loop: ask, record, say, and keep the human's time off the code's clock.
#include "executors/code_files.hpp"
#include "kernex/executor.hpp"

namespace kernex {

block_review review_block(const code_block& block, std::size_t index, std::size_t count) {
    return {.index = index, .count = count, .language = block.language, .code = block.code,
            .sha256 = detail::sha256_hex(block.code)};
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
