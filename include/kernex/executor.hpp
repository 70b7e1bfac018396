// Code executors: one interface for running the code blocks of a model's
// message, statelessly (a local process per block, a Docker container) or
// statefully (a Jupyter kernel). A caller swaps one for another with a config
// line: make_executor({{"executor", "local"}, {"timeout", 10}}).
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kernex {

struct code_block {
    std::string language;  // lower-case first word of the fence's info string
    std::string code;
    int line = 0;          // the message's line its code starts on (from 1; 0: not from a message)
};

// What an approve hook is shown of a block just before it runs: the exact
// bytes that will run, as they will run.
struct block_review {
    std::size_t index = 0;      // its place among execute()'s blocks, from 0
    std::size_t count = 0;      // how many blocks execute() was given
    std::string_view language;  // the block's language, as given
    std::string_view code;      // the code, byte for byte
    std::string sha256;         // the code's SHA-256, 64 hex digits
    // Characters a screen does not show for what they are: C0 controls but
    // tab and newline, DEL, C1 controls, and the Unicode bidirectional
    // controls that reorder what is shown ("Trojan Source"). Not 0: what a
    // human reads may not be what runs (printable_code shows them).
    std::size_t hidden_characters = 0;
};

// An approve hook's answer: run the block, skip it (the next one is asked
// about), or stop (neither it nor any block after it runs).
enum class approval { run, skip, stop };

// Asked before each block runs, on the thread calling execute(); the time it
// takes does not count against the executor's timeout. An exception it
// throws leaves execute() (nothing more runs).
using approve_hook = std::function<approval(const block_review&)>;

// What became of a block an approve hook was asked about (refused: stopped,
// or after a block that was).
enum class block_verdict { approved, skipped, refused };

struct block_approval {
    std::size_t index = 0;
    std::string sha256;
    block_verdict verdict = block_verdict::approved;
};

struct code_result {
    int exit_code = 0;                              // 0 ok, 1 error, 124 timeout, 130 interrupted
    std::string output;                             // what the blocks printed, in order
    // How many blocks ran (0: the message had none, or none was let run).
    std::size_t blocks = 0;
    std::vector<std::filesystem::path> code_files;  // files the blocks were written to (absolute)
    std::vector<std::filesystem::path> output_files;// images/html saved (jupyter)
    bool timed_out = false;
    // Some output was dropped: output keeps the head and the tail of it, with
    // "[… N bytes dropped …]" between them (max_output, max_output_head).
    bool truncated = false;
    // With save_full_output: the file in the work dir holding all of it.
    std::optional<std::filesystem::path> full_output_file;
    // The work dir is a temporary one: code_files (and full_output_file) go
    // with it at stop().
    bool temporary_work_dir = false;
    // With an approve hook: one entry per block it was asked about, and the
    // blocks a stop refused, in order. Empty without a hook. A refused block
    // makes exit_code 1 (unless a block failed before).
    std::vector<block_approval> approvals;
    // How the executor ran the blocks, when it had a choice ("files: copy
    // (...)" for a docker executor): one line each.
    std::vector<std::string> notes;

    // {"exit_code", "blocks", "output", "code_files", "output_files", "timed_out",
    // "truncated", "full_output_file" (when set), "temporary_work_dir" (when
    // true), "approvals": [{"index", "sha256", "verdict":
    // "approved"|"skipped"|"refused"}], "notes"}; output's invalid UTF-8 (a cap can split a character) is
    // replaced by U+FFFD so the object can always be dumped.
    nlohmann::json to_json() const;
};

// Receives output as it arrives: the same text, in the same order, that
// execute() returns in code_result::output.
using output_handler = std::function<void(std::string_view)>;

class code_executor {
public:
    virtual ~code_executor() = default;
    // Runs blocks in order, stopping at the first failure, and returns what
    // they did; on_output, when set, sees the output as it arrives. No
    // blocks: the output is "kernex: no code blocks in the message\n",
    // exit_code 0, blocks 0, nothing started. Never
    // throws for what the code does; throws kernex::error when the executor
    // itself cannot work (a kernel that cannot start, a daemon that is
    // unreachable).
    code_result execute(const std::vector<code_block>& blocks, const output_handler& on_output = {}) {
        if (blocks.empty()) return no_blocks(on_output);
        return execute_blocks(blocks, on_output);
    }
    // Fresh state (a new kernel, a new container). A no-op for stateless ones.
    virtual void restart() = 0;
    // Releases everything (kernel, container, temporary work dir). noexcept, idempotent.
    virtual void stop() noexcept = 0;
    // Makes a running execute() stop its code as a timeout would and return
    // with exit_code 130. Callable from another thread or a signal handler
    // (Ctrl-C in `kernex exec`), so implementations only write to a
    // self-pipe or set an atomic. The default does nothing.
    virtual void interrupt() noexcept {}

    // Every later execute() asks hook before each block runs (empty: no one
    // is asked, every block runs). Not to be called during an execute().
    void set_approve(approve_hook hook) { m_approve = std::move(hook); }
    bool has_approve() const noexcept { return static_cast<bool>(m_approve); }

protected:
    // What execute() runs: the one function an executor implements for it.
    virtual code_result execute_blocks(const std::vector<code_block>& blocks, const output_handler& on_output) = 0;

    // For execute_blocks, just before blocks[i] runs (after every check that
    // could refuse it): asks the approve hook, records its answer in
    // result.approvals, says a skipped or refused block on say (a line), and
    // moves deadline on by the time the hook took. On stop, the blocks after
    // i are recorded refused too and result.exit_code becomes 1. Returns
    // approval::run when there is no hook.
    approval approve_block(const std::vector<code_block>& blocks, std::size_t i, code_result& result,
                           std::chrono::steady_clock::time_point& deadline,
                           const std::function<void(const std::string&)>& say);

private:
    static code_result no_blocks(const output_handler& on_output);
    approve_hook m_approve;
};

// code with each of block_review's hidden characters written as a visible
// escape (\x1b, \u202e), for showing code to a human; the rest unchanged.
std::string printable_code(std::string_view code);

// The review an approve hook gets for block (index of count). Throws
// kernex::error(io_error) if hashing fails.
block_review review_block(const code_block& block, std::size_t index = 0, std::size_t count = 1);

// Finds the fenced code blocks (``` or ~~~, three or more, indented up to
// three spaces, CRLF or LF) of a markdown message, in order. A block without
// a language gets one from a shebang line (#!/bin/bash -> bash,
// #!/usr/bin/env python3 -> python), else default_language. Text between
// blocks is ignored, and so is a fence never closed: a message cut off inside
// a block must not run half a command.
std::vector<code_block> extract_code_blocks(std::string_view markdown,
                                            std::string_view default_language = "python");

// Saves a block's code in dir without running it, as the executors write the
// blocks they run (for a language an executor keeps rather than runs, such as
// HTML): at its filename directive ("# filename: d/page.html" on the first
// line) or else at "tmp_code_<sha256 of code>.<extension>"; beneath dir's fd,
// following no symlink on the way, whatever stood at the name replaced by a
// new 0600 file (dirs made 0700). Returns the file. Throws kernex::error:
// invalid_argument for a name outside dir, io_error when it cannot be written.
std::filesystem::path save_code_block(const std::filesystem::path& dir, std::string_view code,
                                      std::string_view extension);

// What a model needs to know to use the executor config describes (as for
// make_executor): how to write blocks, the languages, where blocks run, the
// work dir, whether state persists, the limits. A few lines of plain text
// for a system message. Starts nothing. Throws kernex::error(invalid_argument)
// for an unknown executor or a value of the wrong type.
std::string describe_executor(const nlohmann::json& config);

// Makes an executor from a JSON config: {"executor": "local" | "docker" |
// "jupyter", ...options}. Throws kernex::error(invalid_argument) for an
// unknown executor or option, listing the valid ones.
std::unique_ptr<code_executor> make_executor(const nlohmann::json& config);

}  // namespace kernex
