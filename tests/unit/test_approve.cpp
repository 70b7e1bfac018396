// The approve hook on the local executor (every executor shares its one
// implementation, code_executor::approve_block): what the hook sees, what
// each answer does, what the result records, and that a human's time is not
// the code's.
#include <doctest/doctest.h>

#include <stdexcept>
#include <thread>

#include "../helpers/test_support.hpp"
#include "kernex/error.hpp"
#include "kernex/local_executor.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using kernex::approval;
using kernex::block_review;
using kernex::block_verdict;
using kernex::code_block;
using kernex::test::temp_dir;

namespace {

// SHA-256 of each block's code, from Python's hashlib (a known answer, not our own hashing).
const std::string sha_one = "0cb42bbdf016ecafd6c21ac6c4b1760bf5b346c70c4f96ba890ef3d74883c8c2";
const std::string sha_two = "7d97a50c9b1eb3b6a49320a5238fd08280240d28befc12465e493d17d8bc8d56";
const std::string sha_three = "8a33a3171728d0f2e90a4e934f3372f2235f2b1dd2eee84ae1970f1e9463ec60";

const std::vector<code_block> three = {{"bash", "echo one\n"}, {"sh", "echo two\n"}, {"bash", "echo three\n"}};

struct seen {
    std::size_t index, count;
    std::string language, code, sha256;
};

kernex::local_executor_options in(const temp_dir& dir) {
    kernex::local_executor_options options;
    options.work_dir = dir.path();
    return options;
}

}  // namespace

TEST_CASE("approve: the hook sees each block's exact language, code and sha256 before it runs") {
    temp_dir dir;
    kernex::local_executor ex(in(dir));
    std::vector<seen> reviews;
    ex.set_approve([&](const block_review& r) {
        // Before it runs: the block's output is not there yet.
        reviews.push_back({r.index, r.count, std::string(r.language), std::string(r.code), r.sha256});
        return approval::run;
    });
    const auto r = ex.execute(three);
    CHECK(r.exit_code == 0);
    CHECK(r.output == "one\ntwo\nthree\n");
    REQUIRE(reviews.size() == 3);
    CHECK(reviews[0].index == 0);
    CHECK(reviews[2].index == 2);
    CHECK(reviews[1].count == 3);
    CHECK(reviews[1].language == "sh");
    CHECK(reviews[1].code == "echo two\n");
    CHECK(reviews[0].sha256 == sha_one);
    CHECK(reviews[1].sha256 == sha_two);
    CHECK(reviews[2].sha256 == sha_three);
    REQUIRE(r.approvals.size() == 3);
    for (const auto& a : r.approvals) CHECK(a.verdict == block_verdict::approved);
    CHECK(r.approvals[2].sha256 == sha_three);
    CHECK(r.to_json()["approvals"][1] ==
          nlohmann::json{{"index", 1}, {"sha256", sha_two}, {"verdict", "approved"}});
}

TEST_CASE("approve: skip runs the next block, stop runs nothing more, both recorded and said") {
    temp_dir dir;
    kernex::local_executor ex(in(dir));

    ex.set_approve([](const block_review& r) { return r.index == 1 ? approval::skip : approval::run; });
    auto r = ex.execute(three);
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("one\n") != std::string::npos);
    CHECK(r.output.find("two\n") == std::string::npos);
    CHECK(r.output.find("three\n") != std::string::npos);
    CHECK(r.output.find("block 2 of 3 (sh) skipped") != std::string::npos);
    REQUIRE(r.approvals.size() == 3);
    CHECK(r.approvals[0].verdict == block_verdict::approved);
    CHECK(r.approvals[1].verdict == block_verdict::skipped);
    CHECK(r.approvals[2].verdict == block_verdict::approved);
    CHECK(r.code_files.size() == 2);  // a skipped block's file is never written

    int asked = 0;
    ex.set_approve([&](const block_review& r) {
        ++asked;
        return r.index == 1 ? approval::stop : approval::run;
    });
    r = ex.execute(three);
    CHECK(asked == 2);  // nobody is asked about a block a stop refused
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("one\n") == 0);
    CHECK(r.output.find("two\n") == std::string::npos);
    CHECK(r.output.find("three\n") == std::string::npos);
    CHECK(r.output.find("block 2 of 3 (sh) refused: it and the 1 block(s) after it did not run") != std::string::npos);
    REQUIRE(r.approvals.size() == 3);
    CHECK(r.approvals[1].verdict == block_verdict::refused);
    CHECK(r.approvals[2].verdict == block_verdict::refused);
    CHECK(r.approvals[2].sha256 == sha_three);
    CHECK(r.to_json()["approvals"][2]["verdict"] == "refused");

    // Refusing the one block: nothing runs at all, not even its file is written.
    ex.set_approve([](const block_review&) { return approval::stop; });
    const fs::path marker = dir.path() / "ran";
    r = ex.execute({{"bash", "touch ran\n"}});
    CHECK(r.exit_code == 1);
    CHECK_FALSE(fs::exists(marker));
    CHECK(r.code_files.empty());

    // Without a hook: as before, nothing recorded.
    ex.set_approve({});
    r = ex.execute({{"bash", "touch ran\n"}});
    CHECK(r.exit_code == 0);
    CHECK(fs::exists(marker));
    CHECK(r.approvals.empty());
}

TEST_CASE("approve: not asked about blocks that cannot run, nor after a failure; a throwing hook runs nothing") {
    temp_dir dir;
    kernex::local_executor ex(in(dir));
    int asked = 0;
    ex.set_approve([&](const block_review&) {
        ++asked;
        return approval::run;
    });
    auto r = ex.execute({{"bash", "echo a\n"}, {"cobol", "DISPLAY 'x'.\n"}});
    CHECK(asked == 0);  // the plan failed before anything would run
    CHECK(r.exit_code == 1);
    r = ex.execute({{"bash", "exit 3\n"}, {"bash", "echo never\n"}});
    CHECK(asked == 1);
    CHECK(r.exit_code == 3);
    CHECK(r.approvals.size() == 1);

    ex.set_approve([](const block_review&) -> approval { throw std::runtime_error("the terminal went away"); });
    CHECK_THROWS_WITH(ex.execute({{"bash", "touch ran\n"}}), "the terminal went away");
    CHECK_FALSE(fs::exists(dir.path() / "ran"));
}

TEST_CASE("approve: the time the hook takes does not count against the timeout") {
    temp_dir dir;
    auto options = in(dir);
    options.timeout = 1000ms;
    kernex::local_executor ex(options);
    ex.set_approve([](const block_review&) {
        std::this_thread::sleep_for(700ms);  // a human reading the code
        return approval::run;
    });
    // 2 × 700 ms of reading and 2 × 300 ms of running: over 1 s in all, within it for the code.
    const auto r = ex.execute({{"bash", "sleep 0.3; echo a\n"}, {"bash", "sleep 0.3; echo b\n"}});
    CHECK(r.exit_code == 0);
    CHECK_FALSE(r.timed_out);
    CHECK(r.output == "a\nb\n");
}
