// What the file-based executors (local, docker) share: their language
// tables, the work dir, the interrupt self-pipe, the output and messages of
// execute(), and the files blocks are written to (the "filename:" directive,
// the content-hashed default name, the checks that keep a name inside the
// work dir, writing the file). Internal to the executors module.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernex/executor.hpp"

namespace kernex::detail {

// A language whose blocks are run as `program arguments... FILE`.
struct file_language {
    std::vector<std::string> names;      // the canonical name, then its aliases
    std::string program;                 // run files with this unless configured otherwise
    std::string extension;               // of content-hashed file names
    std::vector<std::string> arguments;  // between the program and the file
};

// The entry of table with name among its names; nullptr when none.
const file_language* find_language(const std::vector<file_language>& table, std::string_view name);
// "bash, sh (shell), python (py, python3)".
std::string known_languages(const std::vector<file_language>& table);
// Each language's names: {"python", "py", "python3"}, ...
std::vector<std::vector<std::string>> language_names(const std::vector<file_language>& table);

struct made_work_dir {
    std::filesystem::path path;
    bool temporary = false;  // made by us: stop() removes it
};
// The given dir, created if missing, else a fresh temporary one (kernex-XXXXXX).
// Throws kernex::error(io_error) when it cannot be made.
made_work_dir make_work_dir(const std::optional<std::filesystem::path>& given);

// The self-pipe of interrupt(): both ends non-blocking and close-on-exec.
// Throws kernex::error(io_error).
void open_cancel_pipe(int& read_end, int& write_end);
// Async-signal-safe: a full pipe already holds an interrupt.
void send_cancel(int write_end) noexcept;
// Drops interrupts meant for an earlier execute().
void drain_cancel(int read_end) noexcept;

// execute()'s output: the code's, and kernex's messages on lines of their
// own, into result.output and on to on_output as they come.
class block_output {
public:
    block_output(code_result& result, const output_handler& on_output) : m_result(result), m_on_output(on_output) {}
    void emit(std::string_view text);
    // A message of ours on a line of its own, after whatever the code printed.
    void say(const std::string& line);
    // Bytes that max_output leaves for the code's output.
    std::size_t room(std::size_t max_output) const noexcept;

private:
    code_result& m_result;
    const output_handler& m_on_output;
};

// When the next block must end, from now: the call's deadline, or sooner
// its own block_timeout. limit is the one its timeout message names.
struct block_limit {
    std::chrono::steady_clock::time_point deadline;
    std::chrono::milliseconds limit;
};
block_limit limit_for_block(std::chrono::steady_clock::time_point call_deadline, std::chrono::milliseconds call_timeout,
                            const std::optional<std::chrono::milliseconds>& block_timeout);

// "Timeout: the code ran longer than 2 s and was stopped".
std::string timeout_line(std::chrono::milliseconds timeout);
// "[output truncated: N bytes dropped, max_output is M]".
std::string truncated_line(std::uint64_t dropped, std::size_t max_output);

// The name (relative to dir) a block's file gets: its filename directive, or
// a content-hashed one. nullopt when the directive names a place outside dir.
std::optional<std::string> block_file_name(const std::filesystem::path& dir, std::string_view code,
                                           std::string_view extension);

// Writes a block's code to a new file (mode 0600) at name beneath dir,
// through confine::write_beneath: no symlink followed on the way, whatever
// stands at the name replaced, never written through. Returns the file, or
// nullopt after saying why on out.
std::optional<std::filesystem::path> write_block_file(const std::filesystem::path& dir, const std::string& name,
                                                      const std::string& code, block_output& out);

// The NAME of a first line "# filename: NAME", "// filename: NAME",
// "/* filename: NAME */" or "<!-- filename: NAME -->"; empty when there is none.
std::string filename_directive(std::string_view code);

// The SHA-256 of data, 64 lower-case hex digits. Throws kernex::error(io_error) if hashing fails.
std::string sha256_hex(std::string_view data);

// "tmp_code_" + the first 32 hex digits of the code's SHA-256 + "." + extension.
// Throws kernex::error(io_error) if hashing fails.
std::string hashed_code_name(std::string_view code, std::string_view extension);

// name (relative to dir, or absolute under dir, itself canonical) as a
// normalised name relative to dir; nullopt when it leaves dir ("..", another
// absolute path) or names no file. Lexical only: the file is created with
// confine::create_beneath, which refuses a symlink anywhere on the way.
std::optional<std::string> name_inside(const std::filesystem::path& dir, const std::string& name);

// "2 s", "0.5 s": a timeout as the executors' messages show it.
std::string seconds_text(std::chrono::milliseconds ms);

}  // namespace kernex::detail
