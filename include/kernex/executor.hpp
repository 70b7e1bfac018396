// Code executors: one interface for running the code blocks of a model's
// message, statelessly (a local process per block, a Docker container) or
// statefully (a Jupyter kernel). A caller swaps one for another with a config
// line: make_executor({{"executor", "local"}, {"timeout", 10}}).
#pragma once

#include <filesystem>
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
    int exit_code = 0;                              // 0 ok, 1 error, 124 timeout
    std::string output;                             // what the blocks printed, in order
    std::vector<std::filesystem::path> code_files;  // files the blocks were written to
    std::vector<std::filesystem::path> output_files;// images/html saved (jupyter)
    bool timed_out = false;
    bool truncated = false;

    nlohmann::json to_json() const;
};

class code_executor {
public:
    virtual ~code_executor() = default;
    // Runs blocks in order, stopping at the first failure. Never throws for
    // what the code does; throws kernex::error when the executor itself cannot
    // work (a kernel that cannot start, a daemon that is unreachable).
    virtual code_result execute(const std::vector<code_block>& blocks) = 0;
    // Fresh state (a new kernel, a new container). A no-op for stateless ones.
    virtual void restart() = 0;
    // Releases everything (kernel, container, temporary work dir). noexcept, idempotent.
    virtual void stop() noexcept = 0;
};

// Finds the fenced code blocks (``` or ~~~, three or more, indented or not,
// CRLF or LF) of a markdown message, in order. A block without a language
// gets one from a shebang line (#!/bin/bash -> bash, #!/usr/bin/env python3
// -> python), else default_language. Text between blocks is ignored.
std::vector<code_block> extract_code_blocks(std::string_view markdown,
                                            std::string_view default_language = "python");

// Makes an executor from a JSON config: {"executor": "local" | "docker" |
// "jupyter", ...options}. Throws kernex::error(invalid_argument) for an
// unknown executor or option, listing the valid ones.
std::unique_ptr<code_executor> make_executor(const nlohmann::json& config);

}  // namespace kernex
