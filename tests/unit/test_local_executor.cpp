// local_executor with real interpreters: languages, the filename directive
// and its traversal attempts, stopping at failures, timeouts that leave no
// process, the output cap with bounded memory, env and PATH, the factory.
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <iostream>
#include <thread>

#include "../helpers/test_support.hpp"
#include "kernex/error.hpp"
#include "kernex/local_executor.hpp"
#include "kernex/process.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using kernex::code_block;
using kernex::test::read_file;
using kernex::test::temp_dir;

namespace {

kernex::local_executor_options in(const temp_dir& dir) {
    kernex::local_executor_options options;
    options.work_dir = dir.path();
    return options;
}

std::size_t entries(const fs::path& dir) {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

bool installed(const std::string& program) { return kernex::find_program(program, std::getenv("PATH") ? std::getenv("PATH") : "").has_value(); }

}  // namespace

TEST_CASE("each language present on the machine runs") {
    temp_dir dir;
    kernex::local_executor ex(in(dir));
    struct sample {
        std::string language, program, code, output;
    };
    const std::vector<sample> samples = {
        {"bash", "bash", "[[ -n $BASH_VERSION ]] && echo bash ok\n", "bash ok\n"},
        {"sh", "sh", "echo sh ok\n", "sh ok\n"},
        {"shell", "sh", "printf 'shell ok\\n'\n", "shell ok\n"},
        {"python", "python3", "import sys\nprint('python', sys.version_info[0])\n", "python 3\n"},
        {"py", "python3", "print(6 * 7)\n", "42\n"},
        {"javascript", "node", "console.log('js ' + (6 * 7))\n", "js 42\n"},
        {"js", "node", "process.stdout.write('node ok\\n')\n", "node ok\n"},
        {"pwsh", "pwsh", "Write-Output 'pwsh ok'\n", "pwsh ok\n"},
    };
    for (const auto& s : samples) {
        if (!installed(s.program)) {
            MESSAGE("skipped " << s.language << ": " << s.program << " is not installed");
            continue;
        }
        CAPTURE(s.language);
        auto r = ex.execute({{s.language, s.code}});
        CHECK(r.exit_code == 0);
        CHECK(r.output == s.output);
        REQUIRE(r.code_files.size() == 1);
        CHECK(r.code_files[0].parent_path() == fs::canonical(dir.path()));
        CHECK(r.code_files[0].filename().string().starts_with("tmp_code_"));
        CHECK(read_file(r.code_files[0]) == s.code);
    }
}

TEST_CASE("an unknown or unavailable language runs nothing and names the language") {
    temp_dir dir;
    kernex::local_executor ex(in(dir));
    auto r = ex.execute({{"bash", "touch ran\n"}, {"c++", "int main() {}\n"}});
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("unknown language 'c++'") != std::string::npos);
    CHECK(r.output.find("python (py, python3)") != std::string::npos);
    CHECK(entries(dir.path()) == 0);

    auto options = in(dir);
    options.interpreters = {{"js", "kernex-no-such-node"}};
    kernex::local_executor missing(options);
    r = missing.execute({{"javascript", "1\n"}});
    CHECK(r.exit_code == 1);
    CHECK(r.output == "language 'javascript' is not available: 'kernex-no-such-node' was not found on PATH\n");

    options.interpreters = {{"cobol", "cobc"}};
    CHECK_THROWS_AS(kernex::local_executor{options}, kernex::error);
}

TEST_CASE("the filename directive names the file, in every comment form") {
    temp_dir dir;
    kernex::local_executor ex(in(dir));
    const fs::path wd = fs::canonical(dir.path());
    // Python refuses the last three as syntax errors: their files are written all the same.
    const std::vector<std::pair<std::string, std::string>> forms = {
        {"# filename: sub/dir/hello.py\nprint('hello')\n", "sub/dir/hello.py"},
        {"#   filename:  spaced.py  \nprint('hello')\n", "spaced.py"},
        {"// filename: slashes.py\n", "slashes.py"},
        {"/* filename: block.py */\n", "block.py"},
        {"<!-- filename: page.py -->\n", "page.py"},
        {"# filename: " + (wd / "absolute.py").string() + "\n", "absolute.py"},  // inside the work dir
    };
    for (const auto& [code, name] : forms) {
        CAPTURE(code);
        auto r = ex.execute({{"python", code}});
        CHECK(r.code_files == std::vector<fs::path>{wd / name});
        CHECK(read_file(wd / name) == code);
    }
    CHECK(ex.execute({{"python", forms[0].first}}).output == "hello\n");

    // The same name again: the file holds the new code, longer or shorter.
    for (const std::string code : {"# filename: again.sh\necho first version\n", "# filename: again.sh\necho 2\n"}) {
        auto r = ex.execute({{"sh", code}});
        CHECK(read_file(wd / "again.sh") == code);
        CHECK(r.output == code.substr(code.rfind("echo ") + 5));
    }

    // Only the explicit "filename:" form counts.
    auto r = ex.execute({{"sh", "# notes.sh\necho plain\n"}});
    CHECK(r.output == "plain\n");
    CHECK_FALSE(fs::exists(wd / "notes.sh"));
    CHECK(r.code_files[0].filename().string().starts_with("tmp_code_"));
}

TEST_CASE("a filename outside the work dir is refused and nothing is written") {
    temp_dir dir;
    temp_dir outside;
    const fs::path wd = dir / "work";
    fs::create_directories(wd);
    fs::create_directory_symlink(outside.path(), wd / "out");
    fs::create_symlink(outside / "created-through-link.py", wd / "dangling.py");
    auto options = in(dir);
    options.work_dir = wd;
    kernex::local_executor work(options);

    const std::vector<std::string> attempts = {
        "../escape.py",
        "sub/../../escape.py",
        (outside / "absolute.py").string(),
        "out/through-symlink.py",
        "dangling.py",
        ".",
    };
    for (const auto& name : attempts) {
        CAPTURE(name);
        auto r = work.execute({{"python", "print('first block')\n"}, {"python", "# filename: " + name + "\nprint(1)\n"}});
        CHECK(r.exit_code == 1);
        CHECK(r.output == "filename is not inside the work dir: " + name + "\n");
        CHECK(r.code_files.empty());
        CHECK(entries(outside.path()) == 0);
        CHECK(entries(wd) == 2);  // the two symlinks only: not even the first block was written
        CHECK_FALSE(fs::exists(dir / "escape.py"));
    }
}

TEST_CASE("a # filename: too long for the file system says so, and nothing runs") {
    temp_dir dir;
    kernex::local_executor ex(in(dir));
    const std::string part(300, 'a');
    auto r = ex.execute({{"python", "print('first block')\n"}, {"python", "# filename: " + part + ".py\nprint(1)\n"}});
    CHECK(r.exit_code == 1);
    CHECK(r.output == "filename is too long: a part of it has 303 bytes, the file system takes at most 255 (a shorter "
                      "name, or a directory per part): " + part.substr(0, 60) + "\u2026 (303 bytes)\n");
    std::string deep;
    for (int i = 0; i < 20; ++i) deep += std::string(250, 'd') + "/";
    r = ex.execute({{"python", "# filename: " + deep + "x.py\nprint(1)\n"}});
    CHECK(r.exit_code == 1);
    CHECK(r.output.starts_with("filename is too long: 5024 bytes, paths take at most 4095: "));
    CHECK(r.code_files.empty());
    CHECK(entries(dir.path()) == 0);
}

TEST_CASE("a symlink made by an earlier block is refused when the later block is written") {
    temp_dir dir;
    temp_dir outside;
    kernex::local_executor ex(in(dir));
    auto r = ex.execute({{"bash", "ln -s " + outside.path().string() + " link\n"},
                         {"python", "# filename: link/x.py\nprint(1)\n"}});
    CHECK(r.exit_code == 1);
    CHECK(r.output == "filename is not inside the work dir: link/x.py\n");
    CHECK(entries(outside.path()) == 0);
}

TEST_CASE("blocks run in order in the work dir and stop at the first failure") {
    temp_dir dir;
    kernex::local_executor ex(in(dir));
    auto r = ex.execute({{"bash", "echo one; pwd\n"}, {"sh", "echo two >&2; exit 3\n"}, {"bash", "echo three\n"}});
    CHECK(r.exit_code == 3);
    CHECK(r.output == "one\n" + fs::canonical(dir.path()).string() + "\ntwo\n");
    CHECK(r.code_files.size() == 2);

    r = ex.execute({{"python", "import sys\nprint('a')\nprint('b', file=sys.stderr)\nprint('c')\nraise SystemExit(5)\n"}});
    CHECK(r.exit_code == 5);
    CHECK(r.output == "a\nb\nc\n");

    CHECK(ex.execute({}).exit_code == 0);
    CHECK(ex.execute({{"bash", "cat; echo stdin closed\n"}}).output == "stdin closed\n");
}

TEST_CASE("a timeout kills the block's whole process group, keeps partial output, exit 124") {
    temp_dir dir;
    auto options = in(dir);
    options.timeout = 1s;
    kernex::local_executor ex(options);
    const auto start = kernex::clock::now();
    const std::string marker = kernex::test::unique_marker();
    auto r = ex.execute(
        {{"bash", "echo before\n(exec -a " + marker + " sleep 1000) &\nwait\n"}, {"bash", "echo never\n"}});
    const auto took = kernex::clock::now() - start;
    CHECK(r.exit_code == 124);
    CHECK(r.timed_out);
    CHECK(r.output == "before\nTimeout: the code ran longer than 1 s and was stopped\n");
    CHECK(took >= 1s);
    CHECK(took < 4s);
    CHECK(kernex::test::no_process_with(marker));

    // The timeout is for the whole call: two blocks of 0.6 s do not fit in 1 s.
    r = ex.execute({{"sh", "sleep 0.6; echo a\n"}, {"sh", "sleep 0.6; echo b\n"}});
    CHECK(r.exit_code == 124);
    CHECK(r.output.starts_with("a\nTimeout"));
}

TEST_CASE("100 MB of output: capped, drained, counted, with bounded memory on both sides") {
    if (!installed("python3")) {
        MESSAGE("skipped: python3 is not installed");
        return;
    }
    temp_dir dir;
    kernex::local_executor ex(in(dir));  // max_output: 1 MiB by default
    const std::string code =
        "import sys\n"
        "chunk = 'x' * (1 << 20)\n"
        "for _ in range(100):\n"
        "    sys.stdout.write(chunk)\n"
        "sys.stdout.flush()\n"
        // VmHWM, not ru_maxrss: a child made by vfork+exec carries its
        // parent's peak in ru_maxrss (Linux folds the old mm's peak into it at
        // exec), which under AddressSanitizer alone exceeds the bound.
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "open('child_peak_kb', 'w').write(peak)\n";
    const long rss_before = kernex::test::status_kb("VmRSS");
    kernex::test::reset_peak_rss();
    std::size_t streamed = 0;
    auto r = ex.execute({{"python", code}}, [&](std::string_view s) { streamed += s.size(); });
    const long peak_growth_kb = kernex::test::status_kb("VmHWM") - rss_before;
    MESSAGE("our peak RSS growth: " << peak_growth_kb << " kB; child peak RSS: "
                                    << read_file(dir / "child_peak_kb") << " kB");
    CHECK(r.exit_code == 0);
    CHECK_FALSE(r.timed_out);
    CHECK(r.truncated);
    const std::size_t cap = 1u << 20;
    const std::size_t head = cap / 10 * 6 + cap % 10 * 6 / 10, tail = cap - head;
    const std::string notice = "\n[\u2026 " + std::to_string(100 * cap - cap) + " bytes dropped \u2026]\n";
    CHECK(r.output == std::string(head, 'x') + notice + std::string(tail, 'x'));
    CHECK(streamed == r.output.size());
    CHECK(peak_growth_kb < 20 * 1024);
    // The child ran to its end (it was never blocked on a full pipe) without
    // holding its output either.
    CHECK(std::stol(read_file(dir / "child_peak_kb")) < 64 * 1024);
}

TEST_CASE("a capped flood keeps its tail, then kernex's own line, and a UTF-8 character is never cut") {
    temp_dir dir;
    kernex::local_executor_options o;
    o.work_dir = dir.path();
    o.block_timeout = 1500ms;
    o.max_output = 100;
    o.max_output_head = 11;
    kernex::local_executor ex(o);
    // '\u00e9' is two bytes: the head's 11th byte and the tail's first (of 89) fall inside one.
    auto r = ex.execute({{"sh", "printf 'aaaaaaaaaa\u00e9'; yes y | head -c 5000; printf '\u00e9'; printf 'z%.0s' $(seq 87); "
                                "echo; sleep 30"}});
    CHECK(r.exit_code == 124);
    CHECK(r.truncated);
    CHECK(r.output == "aaaaaaaaaa\n[\u2026 5004 bytes dropped \u2026]\n" + std::string(87, 'z') +
                          "\nTimeout: the code ran longer than 1.5 s and was stopped\n");
}

TEST_CASE("env additions, a PATH prefix and configured interpreters") {
    temp_dir dir;
    temp_dir bin;
    kernex::test::write_file(bin / "kx-tool", "#!/bin/sh\necho tool says $KX_GREETING\n", true);
    kernex::test::write_file(bin / "python3", "#!/bin/sh\necho fake python runs $1\n", true);
    kernex::test::write_file(bin / "my-python", "#!/bin/sh\necho configured python\n", true);

    auto options = in(dir);
    options.env = {{"KX_GREETING", "hello"}};
    options.path_prefix = {bin.path()};
    kernex::local_executor ex(options);
    auto r = ex.execute({{"bash", "echo $KX_GREETING; kx-tool; echo ${PATH%%:*}\n"}});
    CHECK(r.exit_code == 0);
    CHECK(r.output == "hello\ntool says hello\n" + bin.path().string() + "\n");

    // python3 is found on the block's PATH (a virtualenv's bin first, say).
    r = ex.execute({{"py", "# filename: main.py\nprint(1)\n"}});
    CHECK(r.output == "fake python runs main.py\n");

    options.interpreters = {{"py", (bin / "my-python").string()}};
    kernex::local_executor configured(options);
    CHECK(configured.execute({{"python", "print(1)\n"}}).output == "configured python\n");
}

TEST_CASE("blocks get a clean environment unless env names a variable or inherit_env is set") {
    temp_dir dir;
    ::setenv("KX_SECRET_TOKEN", "s3cret", 1);
    ::setenv("LC_KX_TEST", "kept", 1);
    const std::string show = "echo \"[${KX_SECRET_TOKEN-unset}] [${LC_KX_TEST-unset}] [${KX_ADDED-unset}]\"\n";
    auto run = [&](nlohmann::json config) {
        config["executor"] = "local";
        config["work_dir"] = dir.path().string();
        return kernex::make_executor(config)->execute({{"bash", show}}).output;
    };
    CHECK(run({}) == "[unset] [kept] [unset]\n");
    CHECK(run({{"env", nlohmann::json::array({"KX_SECRET_TOKEN", "KX_ADDED=1"})}}) == "[s3cret] [kept] [1]\n");
    CHECK(run({{"env", {{"KX_ADDED", "2"}}}}) == "[unset] [kept] [2]\n");
    CHECK(run({{"inherit_env", true}}) == "[s3cret] [kept] [unset]\n");
    ::unsetenv("KX_SECRET_TOKEN");
    CHECK(run({{"env", nlohmann::json::array({"KX_SECRET_TOKEN"})}}) == "[unset] [kept] [unset]\n");  // NAME alone: the host has none
    ::unsetenv("LC_KX_TEST");
}

TEST_CASE("a job-control child of a block is killed when the block ends normally") {
    temp_dir dir;
    kernex::local_executor ex(in(dir));
    const std::string marker = kernex::test::unique_marker();
    auto r = ex.execute({{"bash", "set -m\n(exec -a " + marker + " sleep 1000) >/dev/null 2>&1 &\necho $!\n"}});
    CHECK(r.exit_code == 0);
    CHECK(kernex::test::no_process_with(marker));
}

TEST_CASE("the default work dir is a fresh temporary dir that stop() removes") {
    fs::path first;
    {
        kernex::local_executor ex;
        first = ex.work_dir();
        CHECK(fs::is_directory(first));
        CHECK(ex.execute({{"sh", "echo x > f\n"}}).exit_code == 0);
        CHECK(fs::exists(first / "f"));
        ex.stop();
        CHECK_FALSE(fs::exists(first));
        ex.stop();  // idempotent
        CHECK(ex.execute({{"sh", "pwd\n"}}).exit_code == 0);  // usable again, in a new dir
        CHECK(fs::is_directory(ex.work_dir()));
        CHECK(ex.work_dir() != first);
        first = ex.work_dir();
    }
    CHECK_FALSE(fs::exists(first));  // the destructor removed the second one

    temp_dir dir;
    auto options = in(dir);
    options.work_dir = dir / "made/for/me";
    {
        kernex::local_executor ex(options);
        CHECK(fs::is_directory(dir / "made/for/me"));
        ex.stop();
    }
    CHECK(fs::is_directory(dir / "made/for/me"));  // a given work dir is the caller's

    // Removed behind its back: made again.
    kernex::local_executor ex(options);
    fs::remove_all(dir / "made");
    CHECK(ex.execute({{"sh", "echo again > f\n"}}).exit_code == 0);
    CHECK(read_file(dir / "made/for/me/f") == "again\n");
}

TEST_CASE("interrupt() from another thread stops the running block with exit 130") {
    temp_dir dir;
    kernex::local_executor ex(in(dir));
    std::jthread interrupter([&] {
        std::this_thread::sleep_for(300ms);
        ex.interrupt();
    });
    const auto start = kernex::clock::now();
    auto r = ex.execute({{"bash", "echo waiting; sleep 1000\n"}});
    CHECK(r.exit_code == 130);
    CHECK(r.output == "waiting\nInterrupted\n");
    CHECK(kernex::clock::now() - start < 3s);
    interrupter.join();
    // The interrupt was for that call only.
    CHECK(ex.execute({{"sh", "echo next\n"}}).output == "next\n");
}

TEST_CASE("make_executor builds a local executor and validates its options") {
    temp_dir dir;
    auto ex = kernex::make_executor({{"executor", "local"},
                                     {"work_dir", dir.path().string()},
                                     {"timeout", 0.5},
                                     {"max_output", 4},
                                     {"env", {{"KX", "v"}}},
                                     {"path_prefix", "/nonexistent"},
                                     {"interpreters", {{"python", "python3"}}}});
    auto r = ex->execute({{"sh", "echo $KX$KX$KX$KX\n"}});
    CHECK(r.output == "vv\n[\u2026 1 bytes dropped \u2026]\nv\n");
    CHECK(ex->execute({{"sh", "sleep 5\n"}}).exit_code == 124);

    auto message_of = [](const nlohmann::json& config) {
        try {
            kernex::make_executor(config);
        } catch (const kernex::error& e) {
            CHECK(e.code() == kernex::errc::invalid_argument);
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(message_of({{"executor", "nope"}}).starts_with("unknown executor 'nope'; valid executors: local"));
    CHECK(message_of({{"timeout", 3}}).find("\"executor\": one of local") != std::string::npos);
    CHECK(message_of({{"executor", "local"}, {"image", "x"}}) ==
          "unknown option 'image' for executor local; valid options: work_dir, timeout, block_timeout, max_output, max_output_head, "
          "save_full_output, env, "
          "path_prefix, interpreters, inherit_env, sandbox, resident_runner, rlimit_cpu, rlimit_as, rlimit_fsize, rlimit_nofile, "
          "rlimit_nproc");
    CHECK(message_of({{"executor", "local"}, {"rlimit_nproc", 10}}) ==
          "option 'rlimit_nproc' of executor local needs sandbox: true");
    CHECK(message_of({{"executor", "local"}, {"env", nlohmann::json::array({"=x"})}}).find("has no name") != std::string::npos);
    CHECK(message_of({{"executor", "local"}, {"timeout", -1}}).find("option 'timeout' of executor local") !=
          std::string::npos);
    CHECK(message_of({{"executor", "local"}, {"env", {{"A", 1}}}}).find("an object of strings") != std::string::npos);
    CHECK(message_of({{"executor", "local"}, {"max_output", "big"}}).find("non-negative integer") !=
          std::string::npos);
}

TEST_CASE("code_result::to_json, with invalid UTF-8 replaced") {
    kernex::code_result r;
    r.exit_code = 124;
    r.output = "caf\xc3\xa9 \xff cut \xe2\x82";
    r.code_files = {"/w/a.py"};
    r.timed_out = true;
    const auto j = r.to_json();
    CHECK(j["exit_code"] == 124);
    CHECK(j["output"] == "caf\xc3\xa9 \xef\xbf\xbd cut \xef\xbf\xbd\xef\xbf\xbd");
    CHECK(j["code_files"] == nlohmann::json::array({"/w/a.py"}));
    CHECK(j["output_files"] == nlohmann::json::array());
    CHECK(j["timed_out"] == true);
    CHECK(j["truncated"] == false);
    CHECK_NOTHROW((void)j.dump());
}

TEST_CASE("kernex exec: output, exit status, --json, and Ctrl-C passed on to the block") {
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    const fs::path kernex_exe = fs::path(build ? build : ".") / "src/cli/kernex";
    if (!fs::exists(kernex_exe)) {
        MESSAGE("skipped: " << kernex_exe << " is not built");
        return;
    }
    temp_dir dir;
    kernex::test::write_file(dir / "message.md",
                             "Try this:\n```bash\necho out; echo err >&2\n```\nand\n```sh\nexit 4\n```\n");
    kernex::spawn_options options;
    options.argv = {kernex_exe.string(), "exec", (dir / "message.md").string()};
    auto r = kernex::run_process(options, {});
    CHECK(r.exit_code == 4);
    // The failing block has no line of its own to name: the message says which block, and where it starts.
    CHECK(r.output == "out\nerr\nkernex: " + (dir / "message.md").string() + ", block 2 (line 7)\n");

    options.argv = {kernex_exe.string(), "exec", "--json", "--work-dir", (dir / "wd").string(), "--lang", "sh",
                    (dir / "message.md").string()};
    r = kernex::run_process(options, {});
    CHECK(r.exit_code == 4);
    const auto j = nlohmann::json::parse(r.output);
    CHECK(j["exit_code"] == 4);
    CHECK(j["output"] == "out\nerr\n");
    CHECK(j["code_files"].size() == 2);
    CHECK(j["error_at"] == nlohmann::json({{"file", (dir / "message.md").string()}, {"block", 2}, {"line", 7}}));

    const std::string marker = kernex::test::unique_marker();
    kernex::test::write_file(dir / "sleep.md", "```bash\necho started > " + (dir / "block.pid").string() +
                                                   "\nexec -a " + marker + " sleep 1000\n```\n");
    options.argv = {kernex_exe.string(), "exec", (dir / "sleep.md").string()};
    options.stdout_mode = kernex::output_mode::null;
    kernex::child_process cli(options);
    const auto deadline = kernex::clock::now() + 10s;
    while (read_file(dir / "block.pid").empty() && kernex::clock::now() < deadline) std::this_thread::sleep_for(10ms);
    REQUIRE_FALSE(read_file(dir / "block.pid").empty());
    ::kill(cli.pid(), SIGINT);  // as a terminal's Ctrl-C would reach kernex, which is not in the block's group
    const auto status = cli.wait_until(kernex::clock::now() + 5s);
    REQUIRE(status);
    CHECK(kernex::exit_code_of(*status) == 130);
    CHECK(kernex::test::no_process_with(marker));
}

TEST_CASE("save_code_block: a kept block is written as executors write theirs, never outside the dir") {
    temp_dir dir;
    temp_dir outside;
    fs::create_directory_symlink(outside.path(), dir / "out");
    const auto hashed = kernex::save_code_block(dir.path(), "<p>x</p>", "html");
    CHECK(hashed.parent_path() == dir.path());
    CHECK(hashed.filename().string().starts_with("tmp_code_"));
    CHECK(hashed.extension() == ".html");
    CHECK(read_file(hashed) == "<p>x</p>");
    const auto named = kernex::save_code_block(dir.path(), "<!-- filename: site/index.html -->\nhi", "html");
    CHECK(named == dir / "site" / "index.html");
    const auto mode = fs::status(named).permissions() & fs::perms::all;
    CHECK(mode == (fs::perms::owner_read | fs::perms::owner_write));
    for (const std::string& name : std::vector<std::string>{"../x.html", "out/x.html", (outside / "x.html").string()}) {
        CAPTURE(name);
        CHECK_THROWS_WITH_AS(kernex::save_code_block(dir.path(), "<!-- filename: " + name + " -->\n", "html"),
                             ("filename is not inside the work dir: " + name).c_str(), kernex::error);
    }
    CHECK(entries(outside.path()) == 0);
}

namespace {

// The programs (/proc/PID/exe, by name) of this process's living children.
std::vector<std::string> child_programs() {
    std::vector<std::string> names;
    for (const int pid : kernex::test::children()) {
        std::error_code ec;
        const auto exe = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
        if (!ec) names.push_back(exe.filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace

TEST_CASE("a temporary work dir is held between calls: by the last block's reaper, else by a keeper") {
    const std::string self = fs::read_symlink("/proc/self/exe").filename().string();
    REQUIRE(kernex::test::eventually([] { return kernex::test::children().empty(); }, 5000ms));
    {
        kernex::local_executor ex;  // no dir and no process until it is needed
        CHECK(kernex::test::children().empty());
        CHECK(ex.execute({{"sh", "true\n"}}).exit_code == 0);
        // The block's reaper (a fork of this program) stays as the dir's holder, alone.
        CHECK(child_programs() == std::vector<std::string>{self});
        CHECK(ex.execute({{"sh", "true\n"}, {"sh", "true\n"}}).exit_code == 0);
        CHECK(child_programs() == std::vector<std::string>{self});  // the last block's, the others went
    }
    CHECK(kernex::test::eventually([] { return kernex::test::children().empty(); }, 5000ms));
    {
        // A call that runs no block: nothing but a keeper can hold the dir it made.
        kernex::local_executor ex;
        CHECK(ex.execute({{"no-such-language", "x\n"}}).exit_code == 1);
        CHECK(child_programs() == std::vector<std::string>{"kernex-keeper"});
        CHECK(ex.execute({{"sh", "true\n"}}).exit_code == 0);
        CHECK(child_programs() == std::vector<std::string>{self});  // the keeper went
    }
    {
        // work_dir() before any block: made, with a keeper.
        kernex::local_executor ex;
        CHECK(fs::is_directory(ex.work_dir()));
        CHECK(child_programs() == std::vector<std::string>{"kernex-keeper"});
    }
    CHECK(kernex::test::eventually([] { return kernex::test::children().empty(); }, 5000ms));
}
