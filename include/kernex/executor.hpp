// Code executors: one interface for running the code blocks of a model's
// message, statelessly (a local process per block, a Docker container) or
// statefully (a Jupyter kernel). A caller swaps one for another with a config
// line: make_executor({{"executor", "local"}, {"timeout", 10}}).
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kernex {

struct code_block {
    std::string language;  // lower-case first word of the fence's info string
    std::string code;
};

struct code_result {
    int exit_code = 0;                              // 0 ok, 1 error, 124 timeout, 130 interrupted
    std::string output;                             // what the blocks printed, in order
    std::vector<std::filesystem::path> code_files;  // files the blocks were written to
    std::vector<std::filesystem::path> output_files;// images/html saved (jupyter)
    bool timed_out = false;
    bool truncated = false;

    // {"exit_code", "output", "code_files", "output_files", "timed_out",
    // "truncated"}; output's invalid UTF-8 (a cap can split a character) is
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
    // they did; on_output, when set, sees the output as it arrives. Never
    // throws for what the code does; throws kernex::error when the executor
    // itself cannot work (a kernel that cannot start, a daemon that is
    // unreachable).
    code_result execute(const std::vector<code_block>& blocks, const output_handler& on_output = {}) {
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

protected:
    // What execute() runs: the one function an executor implements for it.
    virtual code_result execute_blocks(const std::vector<code_block>& blocks, const output_handler& on_output) = 0;
};

// Finds the fenced code blocks (``` or ~~~, three or more, indented up to
// three spaces, CRLF or LF) of a markdown message, in order. A block without
// a language gets one from a shebang line (#!/bin/bash -> bash,
// #!/usr/bin/env python3 -> python), else default_language. Text between
// blocks is ignored, and so is a fence never closed: a message cut off inside
// a block must not run half a command.
std::vector<code_block> extract_code_blocks(std::string_view markdown,
                                            std::string_view default_language = "python");

// Makes an executor from a JSON config: {"executor": "local" | "docker" |
// "jupyter", ...options}. Throws kernex::error(invalid_argument) for an
// unknown executor or option, listing the valid ones.
std::unique_ptr<code_executor> make_executor(const nlohmann::json& config);

}  // namespace kernex
