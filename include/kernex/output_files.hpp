// Rich outputs as files: the images and HTML a kernel displays are saved to
// a directory so that command-line users and agents can open them.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kernex {

// Saves the image/png, image/jpeg (base64-decoded), image/svg+xml and
// text/html entries of a display_data / execute_result data bundle as new
// files <dir>/<stem>.<ext> (creating dir). A name already taken, by a file
// or by anything code planted there (a symlink, a FIFO), is left alone and
// the file gets a fresh one, <stem>.<ext> -> <stem>-2.<ext>, -3, ...; no
// symlink is followed. Returns the paths written, in that order: the names
// really used. Throws kernex::error(io_error) when a file cannot be written,
// (protocol_error) for invalid base64.
std::vector<std::filesystem::path> save_output_files(const nlohmann::json& data, const std::filesystem::path& dir,
                                                     const std::string& stem);

// What kernex run and kernex exec print for a file save_output_files wrote:
// "[saved image/png to PATH]" (the MIME type from the file's extension).
std::string saved_output_line(const std::filesystem::path& file);

// The text a terminal or an agent is shown for a MIME bundle: text/plain,
// unless it is only a default repr ("<IPython.core.display.Markdown object>")
// and the bundle has a source text: text/markdown or text/latex as they
// are, application/json (or any +json) pretty-printed, any other text/* but
// HTML as it is. nullopt when the bundle has no text form.
std::optional<std::string> text_form(const nlohmann::json& data);

// True when data holds a type save_output_files saves.
bool has_file_output(const nlohmann::json& data);

// Decodes standard base64 (whitespace ignored). Throws kernex::error(protocol_error).
std::string base64_decode(std::string_view text);
// Standard base64 with padding, no line breaks.
std::string base64_encode(std::string_view bytes);

// A new file beneath dir (created if missing) that keeps all of what a run
// printed, none of it dropped by an output cap (kernex run and exec
// --save-full-output, the executors' save_full_output): dir/name, or
// name-2, name-3... when that is taken, never an existing file and never
// through a symlink planted at the name or on the way (the file is created
// as every file in a dir code can write is). Closed by the destructor.
class full_output_file {
public:
    // Throws kernex::error(io_error) when dir or the file cannot be made.
    explicit full_output_file(const std::filesystem::path& dir, std::string_view name = "kernex-output.txt");
    ~full_output_file();
    full_output_file(const full_output_file&) = delete;
    full_output_file& operator=(const full_output_file&) = delete;

    // Appends text. After a write fails (a full disk) nothing more is
    // written, and error() says why.
    void write(std::string_view text) noexcept;
    // dir/the name used.
    const std::filesystem::path& path() const noexcept { return m_path; }
    // Why the file is incomplete; empty while every write succeeded.
    const std::string& error() const noexcept { return m_error; }

private:
    int m_fd = -1;
    std::filesystem::path m_path;
    std::string m_error;
};

// Removes ANSI escape sequences (colours in tracebacks).
std::string strip_ansi(std::string_view text);

}  // namespace kernex
