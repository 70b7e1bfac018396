#include "kernex/local_executor.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "executors/executor_config.hpp"
#include "kernex/error.hpp"
#include "kernex/process.hpp"

namespace kernex {

namespace {

namespace fs = std::filesystem;

struct language {
    std::vector<std::string> names;      // the canonical name, then its aliases
    std::string program;                 // run files with this unless configured otherwise
    std::string extension;               // of content-hashed file names
    std::vector<std::string> arguments;  // between the program and the file
};

const std::vector<language>& language_table() {
    static const std::vector<language> table = {
        {{"bash"}, "bash", "sh", {}},
        {{"sh", "shell"}, "sh", "sh", {}},
        {{"python", "py", "python3"}, "python3", "py", {}},
        {{"javascript", "js", "node", "nodejs"}, "node", "js", {}},
        {{"pwsh", "powershell", "ps1"}, "pwsh", "ps1", {"-NoProfile", "-NonInteractive", "-File"}},
    };
    return table;
}

const language* find_language(std::string_view name) {
    for (const auto& lang : language_table())
        if (std::find(lang.names.begin(), lang.names.end(), name) != lang.names.end()) return &lang;
    return nullptr;
}

std::string known_languages() {
    std::string out;
    for (const auto& lang : language_table()) {
        out.append(out.empty() ? "" : ", ").append(lang.names[0]);
        for (std::size_t i = 1; i < lang.names.size(); ++i)
            out.append(i == 1 ? " (" : ", ").append(lang.names[i]).append(i + 1 == lang.names.size() ? ")" : "");
    }
    return out;
}

std::string sha256_hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr) != 1)
        throw error(errc::io_error, "SHA-256 failed");
    static constexpr char digits[] = "0123456789abcdef";
    std::string hex;
    for (unsigned int i = 0; i < size; ++i) {
        hex += digits[digest[i] >> 4];
        hex += digits[digest[i] & 0x0f];
    }
    return hex;
}

// The NAME of a first line "# filename: NAME", "// filename: NAME",
// "/* filename: NAME */" or "<!-- filename: NAME -->"; empty when there is none.
std::string filename_directive(std::string_view code) {
    auto trim = [](std::string_view s) {
        const auto first = s.find_first_not_of(" \t\r");
        if (first == std::string_view::npos) return std::string_view();
        return s.substr(first, s.find_last_not_of(" \t\r") - first + 1);
    };
    const std::string_view line = trim(code.substr(0, code.find('\n')));
    static constexpr std::pair<std::string_view, std::string_view> comments[] = {
        {"<!--", "-->"}, {"/*", "*/"}, {"//", ""}, {"#", ""}};
    for (const auto& [open, close] : comments) {
        if (line.size() < open.size() + close.size() || !line.starts_with(open) || !line.ends_with(close)) continue;
        std::string_view inner = trim(line.substr(open.size(), line.size() - open.size() - close.size()));
        constexpr std::string_view key = "filename:";
        if (!inner.starts_with(key)) return {};
        return std::string(trim(inner.substr(key.size())));
    }
    return {};
}

// Where name (relative to dir, or absolute) really is, all symlinks followed,
// when that is inside dir (itself canonical); nullopt otherwise. A dangling
// symlink at the end is refused: writing through it would create its target.
std::optional<fs::path> resolve_inside(const fs::path& dir, const std::string& name) {
    std::error_code ec;
    const fs::path target = fs::weakly_canonical(dir / fs::path(name), ec);
    if (ec) return std::nullopt;
    const auto [d, t] = std::mismatch(dir.begin(), dir.end(), target.begin(), target.end());
    if (d != dir.end() || t == target.end()) return std::nullopt;
    if (fs::is_symlink(fs::symlink_status(target, ec))) return std::nullopt;
    return target;
}

// Writes code to file, making its parent dirs. Returns an error
// message, empty on success.
std::string write_code_file(const fs::path& file, const std::string& code) {
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    if (ec) return "cannot create " + file.parent_path().string() + ": " + ec.message();
    // Making the parent dirs must not have led outside (a dangling symlink on the way).
    if (fs::canonical(file.parent_path(), ec) != file.parent_path() || ec)
        return "filename is not inside the work dir: " + file.string();
    // O_NOFOLLOW: a symlink planted at the name since it was resolved is refused, not followed.
    const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return "cannot write " + file.string() + ": " + std::strerror(errno);
    auto failed = [&] {
        const std::string message = "cannot write " + file.string() + ": " + std::strerror(errno);
        ::close(fd);
        return message;
    };
    // A block run again finds its content-hashed file as it left it. Not
    // truncating is worth it: freeing a file's blocks costs milliseconds on a
    // busy ext4 mounted with discard, more than the rest of a block's overhead.
    struct stat st {};
    if (::fstat(fd, &st) != 0) return failed();
    if (static_cast<std::size_t>(st.st_size) == code.size()) {
        std::string existing(code.size(), '\0');
        if (::pread(fd, existing.data(), existing.size(), 0) == static_cast<ssize_t>(existing.size()) &&
            existing == code) {
            ::close(fd);
            return {};
        }
    }
    for (std::size_t done = 0; done < code.size();) {
        const ssize_t n = ::pwrite(fd, code.data() + done, code.size() - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return failed();
        done += static_cast<std::size_t>(n);
    }
    if (static_cast<std::size_t>(st.st_size) > code.size() && ::ftruncate(fd, static_cast<off_t>(code.size())) != 0)
        return failed();
    ::close(fd);
    return {};
}

std::string seconds_text(std::chrono::milliseconds ms) {
    const auto count = ms.count();
    std::string text = std::to_string(count / 1000);
    if (count % 1000) {
        std::string frac = std::to_string(1000 + count % 1000).substr(1);
        while (frac.back() == '0') frac.pop_back();
        text += "." + frac;
    }
    return text + " s";
}

// What one block needs to run, worked out before anything runs.
struct planned_block {
    std::string name;                // as written (directive) or content-hashed, relative to the work dir
    std::vector<std::string> argv;   // interpreter and its arguments; the file goes last
};

}  // namespace

local_executor::local_executor(local_executor_options options) : m_options(std::move(options)) {
    std::map<std::string, std::string> interpreters;
    for (const auto& [name, program] : m_options.interpreters) {
        const language* lang = find_language(name);
        if (!lang)
            throw error(errc::invalid_argument, "interpreter given for unknown language '" + name +
                                                    "'; the local executor runs " + known_languages());
        interpreters[lang->names[0]] = program;
    }
    m_options.interpreters = std::move(interpreters);
    if (m_options.work_dir) m_options.work_dir = fs::absolute(*m_options.work_dir);

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
        throw error(errc::io_error, std::string("pipe2 failed: ") + std::strerror(errno));
    m_cancel_read = fds[0];
    m_cancel_write = fds[1];
    try {
        make_work_dir();
    } catch (...) {
        ::close(m_cancel_read);
        ::close(m_cancel_write);
        throw;
    }
}

local_executor::~local_executor() {
    stop();
    ::close(m_cancel_read);
    ::close(m_cancel_write);
}

void local_executor::make_work_dir() {
    std::error_code ec;
    if (m_options.work_dir) {
        fs::create_directories(*m_options.work_dir, ec);
        if (ec || !fs::is_directory(*m_options.work_dir, ec))
            throw error(errc::io_error, "cannot create the work dir " + m_options.work_dir->string() + ": " +
                                            (ec ? ec.message() : "not a directory"));
        m_work_dir = *m_options.work_dir;
        m_owns_work_dir = false;
        return;
    }
    std::string pattern = (fs::temp_directory_path(ec) / "kernex-XXXXXX").string();
    if (!::mkdtemp(pattern.data()))
        throw error(errc::io_error, "cannot create a temporary work dir " + pattern + ": " + std::strerror(errno));
    m_work_dir = pattern;
    m_owns_work_dir = true;
}

void local_executor::stop() noexcept {
    if (m_owns_work_dir) {
        std::error_code ec;
        fs::remove_all(m_work_dir, ec);
        m_work_dir.clear();
        m_owns_work_dir = false;
    }
}

void local_executor::interrupt() noexcept {
    // Non-blocking: a full pipe already holds an interrupt.
    [[maybe_unused]] const ssize_t n = ::write(m_cancel_write, "!", 1);
}

std::vector<std::vector<std::string>> local_executor::languages() {
    std::vector<std::vector<std::string>> out;
    for (const auto& lang : language_table()) out.push_back(lang.names);
    return out;
}

code_result local_executor::execute_blocks(const std::vector<code_block>& blocks, const output_handler& on_output) {
    code_result result;
    auto emit = [&](std::string_view text) {
        result.output.append(text);
        if (on_output) on_output(text);
    };
    // A message of ours on a line of its own, after whatever the code printed.
    auto say = [&](const std::string& line) { emit((result.output.empty() || result.output.back() == '\n' ? "" : "\n") + line + "\n"); };

    // An interrupt meant for an earlier call must not stop this one.
    char sink[64];
    while (::read(m_cancel_read, sink, sizeof sink) > 0) {}

    std::error_code ec;
    // After stop(), or when someone removed it: made again (a fresh temporary one, or the one given).
    if (m_work_dir.empty() || !fs::is_directory(m_work_dir, ec)) make_work_dir();
    const fs::path dir = fs::canonical(m_work_dir, ec);
    if (ec) throw error(errc::io_error, "the work dir " + m_work_dir.string() + " is gone: " + ec.message());

    spawn_options spawn;
    spawn.cwd = dir;
    spawn.env = m_options.env;
    {
        std::string path;
        for (const auto& p : m_options.path_prefix) path.append(fs::absolute(p).string()).append(":");
        const auto env_path = spawn.env.find("PATH");
        const char* inherited = std::getenv("PATH");
        path += env_path != spawn.env.end() ? env_path->second : inherited ? inherited : "";
        if (!path.empty() && path.back() == ':') path.pop_back();
        if (!path.empty()) spawn.env["PATH"] = path;
        // Python's stdout is block-buffered into a pipe: its prints would come
        // after its traceback instead of in the order they happened.
        spawn.env.emplace("PYTHONUNBUFFERED", "1");
    }
    const auto path_it = spawn.env.find("PATH");
    const std::string_view child_path = path_it != spawn.env.end() ? std::string_view(path_it->second) : "";

    // Everything is checked before anything is written or run: a message
    // whose third block cannot run runs none.
    std::vector<planned_block> plan;
    for (const auto& block : blocks) {
        const language* lang = find_language(block.language);
        if (!lang) {
            say("unknown language '" + block.language + "': the local executor runs " + known_languages());
            result.exit_code = 1;
            return result;
        }
        const auto configured = m_options.interpreters.find(lang->names[0]);
        const std::string& program = configured != m_options.interpreters.end() ? configured->second : lang->program;
        const auto executable = find_program(program, child_path, dir);
        if (!executable) {
            say("language '" + block.language + "' is not available: '" + program + "' was not found" +
                (program.find('/') == std::string::npos ? " on PATH" : ""));
            result.exit_code = 1;
            return result;
        }
        planned_block step;
        step.name = filename_directive(block.code);
        if (step.name.empty())
            step.name = "tmp_code_" + sha256_hex(block.code).substr(0, 32) + "." + lang->extension;
        else if (!resolve_inside(dir, step.name)) {
            say("filename is not inside the work dir: " + step.name);
            result.exit_code = 1;
            return result;
        }
        step.argv.push_back(executable->string());
        step.argv.insert(step.argv.end(), lang->arguments.begin(), lang->arguments.end());
        plan.push_back(std::move(step));
    }

    const auto deadline = clock::now() + m_options.timeout;
    std::uint64_t dropped = 0;
    for (std::size_t i = 0; i < plan.size(); ++i) {
        // Resolved again: an earlier block may have made a symlink on the way.
        const auto file = resolve_inside(dir, plan[i].name);
        if (!file) {
            say("filename is not inside the work dir: " + plan[i].name);
            result.exit_code = 1;
            break;
        }
        if (std::string problem = write_code_file(*file, blocks[i].code); !problem.empty()) {
            say(problem);
            result.exit_code = 1;
            break;
        }
        result.code_files.push_back(*file);

        spawn.argv = plan[i].argv;
        // Relative, as the code's own messages will show it; "./" keeps a
        // name starting with '-' from being read as an option.
        std::string relative = file->lexically_relative(dir).string();
        spawn.argv.push_back(relative.starts_with("-") ? "./" + relative : relative);

        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
        run_result run;
        if (left.count() > 0) {
            run_options limits;
            limits.timeout = left;
            limits.max_output = m_options.max_output - std::min(m_options.max_output, result.output.size());
            limits.on_output = emit;
            limits.cancel_fd = m_cancel_read;
            run = run_process(spawn, limits);
        } else {
            run.timed_out = true;
        }
        dropped += run.dropped_bytes;
        if (run.timed_out) {
            say("Timeout: the code ran longer than " + seconds_text(m_options.timeout) + " and was stopped");
            result.exit_code = 124;
            result.timed_out = true;
            break;
        }
        if (run.interrupted) {
            say("Interrupted");
            result.exit_code = 130;
            break;
        }
        if (run.exit_code != 0) {
            result.exit_code = run.exit_code;
            break;
        }
    }
    if (dropped > 0) {
        result.truncated = true;
        say("[output truncated: " + std::to_string(dropped) + " bytes dropped, max_output is " +
            std::to_string(m_options.max_output) + "]");
    }
    return result;
}

namespace detail {

std::unique_ptr<code_executor> make_local_executor(const nlohmann::json& config) {
    const executor_config c(config, "local");
    local_executor_options options;
    if (auto v = c.string("work_dir")) options.work_dir = *v;
    if (auto v = c.seconds("timeout")) options.timeout = *v;
    if (auto v = c.count("max_output")) options.max_output = *v;
    if (auto v = c.string_map("env")) options.env = std::move(*v);
    if (auto v = c.string_list("path_prefix")) options.path_prefix.assign(v->begin(), v->end());
    if (auto v = c.string_map("interpreters")) options.interpreters = std::move(*v);
    return std::make_unique<local_executor>(std::move(options));
}

}  // namespace detail

}  // namespace kernex
