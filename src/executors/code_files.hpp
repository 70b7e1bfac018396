// What the file-based executors (local, docker) share: their language
// tables, the work dir, the interrupt self-pipe, the output and messages of
// execute(), and the files blocks are written to (the "filename:" directive,
// the content-hashed default name, the checks that keep a name inside the
// work dir, writing the file). Internal to the executors module.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "confine/unique_fd.hpp"
#include "kernex/executor.hpp"
#include "kernex/output_files.hpp"

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

// How much of execute()'s output is kept: max bytes of it, the first head of
// them as they come (unset: 60 % of max), the last max - head held back until
// the end. Throws kernex::error(invalid_argument) from check() when head > max.
struct output_cap {
    std::size_t max = 1u << 20;
    std::optional<std::size_t> head;
    std::size_t head_bytes() const noexcept { return head ? std::min(*head, max) : max / 10 * 6 + max % 10 * 6 / 10; }
    void check(std::string_view executor) const;
};

// execute()'s output: the code's, and kernex's messages on lines of their
// own, into result.output and on to on_output. The code's output is capped
// (output_cap): its head passes on as it comes; past the head, the newest
// bytes are held back, and finish() says how many between were dropped
// ("[… N bytes dropped …]") before it passes the tail on, so the last lines
// (a traceback, a timeout) survive a flood. kernex's own lines (say) are
// never dropped. Cuts fall between UTF-8 characters.
class block_output {
public:
    block_output(code_result& result, const output_handler& on_output, output_cap cap = {})
        : m_result(result), m_on_output(on_output), m_cap(cap), m_head_room(cap.head_bytes()) {}
    block_output(const block_output&) = delete;
    block_output& operator=(const block_output&) = delete;
    // The code's output.
    void emit(std::string_view text);
    // A message of ours on a line of its own, after whatever the code printed.
    void say(const std::string& line);
    // Every byte (the code's and ours, none dropped) also goes to a new file
    // beneath dir, kernex-output.txt (or -2, -3...: never an existing one),
    // created through confine (no symlink followed); result.full_output_file
    // names it. Throws kernex::error(io_error) when it cannot be made.
    void save_full_output(const std::filesystem::path& dir);
    // Passes on the notice of what was dropped and the tail held back; sets
    // result.truncated when something was dropped. Call once, at the end.
    void finish();

private:
    void pass(std::string_view text);  // to the result and on_output
    void copy(std::string_view text);  // to the full output's file
    struct piece {
        std::string text;
        bool ours = false;
    };
    code_result& m_result;
    const output_handler& m_on_output;
    output_cap m_cap;
    std::size_t m_head_room;    // of the head, still free
    bool m_holding = false;     // the head is full: the code's output is held back
    std::deque<piece> m_tail;   // held back, in order (ours never dropped)
    std::size_t m_tail_bytes = 0;  // the code's bytes in m_tail
    std::uint64_t m_dropped = 0;
    char m_last = '\n';          // of everything emitted or said, for say()'s line
    std::optional<full_output_file> m_full;  // the full output's file, when asked for
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
// "[… N bytes dropped …]".
std::string truncated_line(std::uint64_t dropped);

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
// absolute path), names no file, or is too long (a part over NAME_MAX, the
// whole over PATH_MAX). Lexical only: the file is created with
// confine::create_beneath, which refuses a symlink anywhere on the way.
std::optional<std::string> name_inside(const std::filesystem::path& dir, const std::string& name);

// Why name is too long for the file system (a part over NAME_MAX) or for
// an interpreter to open by its path (PATH_MAX); empty when it is not.
std::string length_problem(const std::filesystem::path& name);

// Why a "# filename:" name was refused, in words that say what to do: a
// part longer than the file system's NAME_MAX (or the whole over PATH_MAX)
// says so; anything else is "filename is not inside the work dir: NAME".
std::string filename_refusal(const std::string& name);

// "2 s", "0.5 s": a timeout as the executors' messages show it.
std::string seconds_text(std::chrono::milliseconds ms);

}  // namespace kernex::detail
