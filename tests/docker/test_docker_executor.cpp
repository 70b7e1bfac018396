// docker_executor and docker_client against a real dockerd of the suite's
// own (Debian's docker.io), with local images only: busybox (shell) and a
// debootstrapped Debian with python3 (python, bash).
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <memory>
#include <thread>

#include "docker/archive.hpp"
#include "docker/containers.hpp"
#include "docker/ledger.hpp"
#include "docker_test_support.hpp"
#include "kernex/docker_executor.hpp"
#include "kernex/error.hpp"
#include "kernex/process.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using kernex::code_block;
using kernex::docker_executor;
using kernex::docker_executor_options;
using steady = std::chrono::steady_clock;

namespace {

// The run with KERNEX_TEST_DOCKER_TLS=1 (docker_executor_copy) reaches the
// daemon as a remote one: its tcp port speaks TLS (certificates made here
// with openssl) and the executors under test go there; the test's own client
// keeps the unix socket.
bool over_tls() {
    const char* v = std::getenv("KERNEX_TEST_DOCKER_TLS");
    return v && std::string_view(v) == "1";
}

std::vector<std::string> tls_daemon_args(const fs::path& certs) {
    if (certs.empty()) return {};
    return {"--tlsverify", "--tlscacert", (certs / "ca.pem").string(), "--tlscert", (certs / "server.pem").string(),
            "--tlskey", (certs / "server-key.pem").string()};
}

// The suite's daemon, started on first use and stopped at exit (also on a
// crash: it gets SIGTERM when we die).
struct suite_daemon {
    kernex::test::temp_dir cert_dir;
    fs::path certs = over_tls() ? kernex::test::tls_certificates_in(cert_dir.path()) : fs::path{};
    unsigned short tcp_port = kernex::test::free_tcp_port();
    kernex::test::test_dockerd daemon{tcp_port, tls_daemon_args(certs)};
    kernex::docker_client client = daemon.client();
    bool python_ready = false;

    suite_daemon() { kernex::test::ensure_busybox_image(client); }
    void need_python() {
        if (python_ready) return;
        kernex::test::ensure_python_image(client);
        python_ready = true;
    }
    // Where the executors under test reach the daemon, and with what.
    std::string host() const { return over_tls() ? "tcp://127.0.0.1:" + std::to_string(tcp_port) : daemon.host(); }
    kernex::docker_tls_options tls() const {
        if (certs.empty()) return {};
        return {.verify = {}, .ca = certs / "ca.pem", .cert = certs / "client.pem", .key = certs / "client-key.pem"};
    }
};

suite_daemon& suite() { return kernex::test::suite_once<suite_daemon>("the suite's dockerd"); }

docker_executor_options busybox(std::chrono::milliseconds timeout = 30s) {
    docker_executor_options o;
    o.image = kernex::test::busybox_image;
    o.docker_host = suite().host();
    o.tls = suite().tls();
    o.timeout = timeout;
    // The suite runs twice: as is (bind, for the unix socket) and with
    // files "copy" over TLS (docker_executor_copy), as for a daemon on
    // another machine.
    if (const char* files = std::getenv("KERNEX_TEST_DOCKER_FILES")) o.files = files;
    return o;
}

docker_executor_options python(std::chrono::milliseconds timeout = 60s) {
    suite().need_python();
    docker_executor_options o = busybox(timeout);
    o.image = kernex::test::python_image;
    return o;
}

kernex::code_result run(docker_executor& ex, const std::string& language, const std::string& code) {
    return ex.execute({code_block{language, code}});
}

// Ids of the containers the daemon has, running or not.
std::vector<std::string> container_ids(kernex::docker_client& client) {
    std::vector<std::string> ids;
    for (const auto& c : client.call("GET", "/containers/json?all=1")) ids.push_back(c["Id"].get<std::string>());
    return ids;
}

bool has_container(kernex::docker_client& client, const std::string& id) {
    const auto ids = container_ids(client);
    return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// `kernex exec --executor docker --image BUSYBOX FLAGS... --json MESSAGE` on
// the suite's daemon (with --files $KERNEX_TEST_DOCKER_FILES when set).
kernex::spawn_options kernex_exec_json(const fs::path& message, const std::vector<std::string>& flags = {}) {
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    REQUIRE(build != nullptr);
    kernex::spawn_options spawn;
    spawn.argv = {(fs::path(build) / "src" / "cli" / "kernex").string(), "exec", "--executor", "docker", "--image",
                  kernex::test::busybox_image};
    spawn.argv.insert(spawn.argv.end(), flags.begin(), flags.end());
    if (const char* files = std::getenv("KERNEX_TEST_DOCKER_FILES")) spawn.argv.insert(spawn.argv.end(), {"--files", files});
    spawn.argv.insert(spawn.argv.end(), {"--json", message.string()});
    spawn.env["DOCKER_HOST"] = suite().daemon.host();
    spawn.merge_stderr = false;
    return spawn;
}

// Its run: the exit code and the result (a JSON object, else the test stops).
std::pair<int, nlohmann::json> run_exec_json(const kernex::spawn_options& spawn, std::chrono::seconds timeout) {
    kernex::run_options limits;
    limits.timeout = timeout;
    const auto r = kernex::run_process(spawn, limits);
    auto result = nlohmann::json::parse(r.output, nullptr, false);
    REQUIRE_MESSAGE(result.is_object(), r.output);
    return {r.exit_code, std::move(result)};
}

// The container's processes as the daemon sees them from the host (its
// cgroup, the host's ps): "UID STAT ARGS" lines, zombies left out.
std::vector<std::string> processes_of(kernex::docker_client& client, const std::string& id) {
    const auto top = client.call("GET", "/containers/" + id + "/top?ps_args=-o%20pid,uid,stat,args");
    std::vector<std::string> out;
    for (const auto& p : top["Processes"]) {
        if (p[2].get<std::string>().starts_with("Z")) continue;
        out.push_back(p[1].get<std::string>() + " " + p[2].get<std::string>() + " " + p[3].get<std::string>());
    }
    return out;
}

// The host's pid of the container's first process (0 when it is not running).
long init_pid(kernex::docker_client& client, const std::string& id) {
    return client.call("GET", "/containers/" + id + "/json")["State"].value("Pid", 0L);
}

// Those not of the container's first process: the resident runner (its
// pid 1, as the blocks' user), or the keeper of the exec path (uid 65534, or
// 65533 for blocks running as 65534) with its sleep.
std::vector<std::string> block_processes(kernex::docker_client& client, const std::string& id) {
    const std::string init = std::to_string(init_pid(client, id));
    const auto top = client.call("GET", "/containers/" + id + "/top?ps_args=-o%20pid,uid,stat,args");
    std::vector<std::string> out;
    for (const auto& p : top["Processes"]) {
        if (p[2].get<std::string>().starts_with("Z") || p[0].get<std::string>() == init) continue;
        const std::string line = p[1].get<std::string>() + " " + p[2].get<std::string>() + " " + p[3].get<std::string>();
        if (!line.starts_with("65534 ") && !line.starts_with("65533 ")) out.push_back(line);
    }
    return out;
}

// Whether the result's notes say the blocks ran through the resident runner.
bool through_runner(const kernex::code_result& r) {
    return std::any_of(r.notes.begin(), r.notes.end(), [](const std::string& n) {
        return n.find("; blocks: the resident runner (the container's pid 1)") != std::string::npos;
    });
}

// The events of one kind the daemon recorded for the container so far:
// exec_create (an Engine API exec; the daemon forgets an exec's id in the
// container once it ends), extract-to-dir (PUT archive), archive-path (GET archive).
std::size_t event_count(kernex::docker_client& client, const std::string& id, const std::string& event) {
    const nlohmann::json filters = {{"container", {id}}, {"event", {event}}};
    const auto r = client.request("GET", "/events?since=0&until=" + std::to_string(::time(nullptr) + 1) +
                                             "&filters=" + kernex::docker::url_encode(filters.dump()));
    REQUIRE(r.status == 200);
    // As a field's value ("Action":"exec_create: sh ..."; each event names it more than once).
    const std::string quoted = "\"" + event;
    std::size_t n = 0;
    for (auto at = r.body.find(quoted); at != std::string::npos; at = r.body.find(quoted, at + 1)) ++n;
    return n;
}

std::size_t exec_count(kernex::docker_client& client, const std::string& id) {
    return event_count(client, id, "exec_create");
}

std::string joined_lines(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
}

}  // namespace

TEST_CASE("sh blocks in busybox: output, exit codes, stop at the first failure") {
    docker_executor ex(busybox());
    auto r = run(ex, "sh", "echo hello; echo oops >&2");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "hello\noops\n");
    r = run(ex, "shell", "echo partial; exit 3");
    CHECK(r.exit_code == 3);
    CHECK(r.output == "partial\n");
    r = ex.execute({{"sh", "echo one"}, {"sh", "exit 5"}, {"sh", "echo never"}});
    CHECK(r.exit_code == 5);
    CHECK(r.output == "one\n");
    CHECK(r.code_files.size() == 2);
    r = run(ex, "sh", "pwd; id -u");
    CHECK(r.output == "/workspace\n" + std::to_string(::getuid()) + "\n");

    std::string streamed;
    r = ex.execute({{"sh", "echo a; sleep 0.2; echo b"}}, [&](std::string_view text) { streamed += text; });
    CHECK(streamed == r.output);
    CHECK(r.output == "a\nb\n");

    r = run(ex, "ruby", "puts 1");
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("unknown language 'ruby'") != std::string::npos);
}

TEST_CASE("the approve hook in the docker executor: each block's exact code and hash; skip and stop run nothing") {
    kernex::test::temp_dir work;
    docker_executor_options o = busybox(4s);
    o.work_dir = work.path();
    docker_executor ex(o);
    const std::vector<kernex::approval> answers = {kernex::approval::run, kernex::approval::skip,
                                                   kernex::approval::run, kernex::approval::stop};
    std::vector<std::string> seen;  // index/count language sha256 code
    ex.set_approve([&](const kernex::block_review& r) {
        seen.push_back(std::to_string(r.index) + "/" + std::to_string(r.count) + " " + std::string(r.language) + " " +
                       r.sha256 + " " + std::string(r.code));
        // A human reading the first block longer than the 4 s timeout: not charged to it.
        if (r.index == 0) std::this_thread::sleep_for(4500ms);
        return answers.at(r.index);
    });
    const auto r = ex.execute({{"sh", "echo one; touch a\n"},
                               {"sh", "touch skipped\n"},
                               {"shell", "sleep 0.5; echo three\n"},
                               {"sh", "touch refused\n"},
                               {"sh", "touch after\n"}});
    REQUIRE(seen.size() == 4);
    CHECK(seen[0] == "0/5 sh e02fc2f2d4088ed9734f830c9217e358006b147a0e94d051207645da740671f3 echo one; touch a\n");
    CHECK(seen[1].starts_with("1/5 sh "));
    CHECK(seen[2].starts_with("2/5 shell "));
    CHECK(seen[3].starts_with("3/5 sh "));
    CHECK_FALSE(r.timed_out);
    CHECK(r.exit_code == 1);
    CHECK(r.output.starts_with("one\n"));
    CHECK(r.output.find("kernex: block 2 of 5 (sh) skipped: not approved, it did not run") != std::string::npos);
    CHECK(r.output.find("three\n") != std::string::npos);
    CHECK(r.output.find("kernex: block 4 of 5 (sh) refused: it and the 1 block(s) after it did not run") !=
          std::string::npos);
    CHECK(fs::exists(work.path() / "a"));
    CHECK_FALSE(fs::exists(work.path() / "skipped"));
    CHECK_FALSE(fs::exists(work.path() / "refused"));
    CHECK_FALSE(fs::exists(work.path() / "after"));
    REQUIRE(r.approvals.size() == 5);
    const std::vector<kernex::block_verdict> verdicts = {
        kernex::block_verdict::approved, kernex::block_verdict::skipped, kernex::block_verdict::approved,
        kernex::block_verdict::refused, kernex::block_verdict::refused};
    for (std::size_t i = 0; i < 5; ++i) {
        CHECK(r.approvals[i].index == i);
        CHECK(r.approvals[i].verdict == verdicts[i]);
    }
    CHECK(r.approvals[4].sha256 == "3a64c89caff73774e529a67653e533f5c2dff31810e9838f4cd45aa0ae86fce7");

    // A hook that throws: execute() ends with its exception, the block never ran.
    ex.set_approve([](const kernex::block_review&) -> kernex::approval { throw std::runtime_error("nobody to ask"); });
    CHECK_THROWS_WITH(run(ex, "sh", "touch thrown\n"), "nobody to ask");
    CHECK_FALSE(fs::exists(work.path() / "thrown"));
}

TEST_CASE("python and bash blocks in the debootstrapped image") {
    docker_executor ex(python());
    auto r = run(ex, "python", "import sys\nprint('from python', sys.version_info[0])\nprint('err', file=sys.stderr)");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "from python 3\nerr\n");
    r = run(ex, "py", "print('before')\n1/0\n");
    CHECK(r.exit_code == 1);
    CHECK(r.output.starts_with("before\n"));
    CHECK(r.output.find("ZeroDivisionError") != std::string::npos);
    r = run(ex, "python3", "raise SystemExit(7)");
    CHECK(r.exit_code == 7);
    r = run(ex, "bash", "echo ${BASH_VERSINFO[0]} > /dev/null && echo bash-ok; false");
    CHECK(r.exit_code == 1);
    CHECK(r.output == "bash-ok\n");
}

TEST_CASE("files: blocks are written in the work dir, files made in /workspace appear there, traversal refused") {
    kernex::test::temp_dir work;
    docker_executor_options o = busybox();
    o.work_dir = work.path() / "sub";
    docker_executor ex(o);
    CHECK(ex.work_dir() == work.path() / "sub");
    auto r = run(ex, "sh", "# filename: scripts/make.sh\necho made > out.txt; mkdir -p d && echo x > d/y");
    CHECK(r.exit_code == 0);
    REQUIRE(r.code_files.size() == 1);
    CHECK(r.code_files[0] == fs::canonical(work.path() / "sub" / "scripts" / "make.sh"));
    CHECK(kernex::test::read_file(work.path() / "sub" / "out.txt") == "made\n");
    CHECK(kernex::test::read_file(work.path() / "sub" / "d" / "y") == "x\n");
    // Owned by us, so that we can remove them.
    struct stat st {};
    REQUIRE(::stat((work.path() / "sub" / "out.txt").c_str(), &st) == 0);
    CHECK(st.st_uid == ::getuid());

    r = run(ex, "sh", "# filename: ../escape.sh\necho no");
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("filename is not inside the work dir") != std::string::npos);
    CHECK_FALSE(fs::exists(work.path() / "escape.sh"));
    r = run(ex, "sh", "ln -s /etc link");
    CHECK(r.exit_code == 0);
    r = run(ex, "sh", "# filename: link/passwd\necho no");
    if (ex.files_mode() == "bind") {
        CHECK(r.exit_code == 1);  // the link is in the work dir: never written through
    } else if (through_runner(r)) {
        // The link stayed in the container (links are not copied back); the
        // runner makes the block's file there without following it: refused, said.
        CHECK(r.exit_code == 1);
        CHECK_MESSAGE(r.output.find("could not be made in the container: a symlink or not a directory on the way: link") !=
                          std::string::npos,
                      r.output);
        CHECK_FALSE(fs::is_symlink(work.path() / "sub" / "link"));
        CHECK(run(ex, "sh", "test -e /etc/passwd || echo no-passwd; test -L link && echo still-a-link").output.starts_with(
            "no-passwd\nstill-a-link\n"));
    } else {
        // The link stayed in the container (links are not copied back); the
        // daemon's extraction replaced it with a dir: /etc is untouched.
        CHECK_FALSE(fs::is_symlink(work.path() / "sub" / "link"));
        CHECK(run(ex, "sh", "test -e /etc/passwd || echo no-passwd; ls -d link/passwd").output == "no-passwd\nlink/passwd\n");
    }

    // A temporary work dir is removed by stop().
    docker_executor temp(busybox());
    const fs::path dir = temp.work_dir();
    CHECK(run(temp, "sh", "echo x > f").exit_code == 0);
    CHECK(fs::exists(dir / "f"));
    temp.stop();
    CHECK_FALSE(fs::exists(dir));
}

TEST_CASE("no network inside: only lo") {
    docker_executor ex(busybox());
    auto r = run(ex, "sh", "ls /sys/class/net");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "lo\n");
    r = run(ex, "sh", "ip -o link | wc -l; ip -4 route | wc -l");
    CHECK(r.output == "1\n0\n");
}

TEST_CASE("a timeout kills the block's processes in the container, keeps partial output, gives 124") {
    docker_executor ex(busybox(2s));
    const auto started = steady::now();
    auto r = run(ex, "sh",
                 "echo before\n"
                 "sleep 300 &\n"
                 "setsid sh -c 'sleep 301' &\n"       // in another session
                 "(trap '' TERM HUP; sleep 302) &\n"  // ignoring signals but KILL
                 "sleep 303\n");
    const auto took = steady::now() - started;
    CHECK(r.exit_code == 124);
    CHECK(r.timed_out);
    CHECK(r.output.starts_with("before\n"));
    CHECK(r.output.find("Timeout") != std::string::npos);
    CHECK(took >= 2s);
    CHECK(took < 15s);
    r = run(ex, "sh", "ps -o args");
    CHECK(r.exit_code == 0);
    for (const char* left : {"sleep 300", "sleep 301", "sleep 302", "sleep 303"})
        CHECK_MESSAGE(r.output.find(left) == std::string::npos, left << " still runs:\n" << r.output);

    // What a block leaves in the background when it exits is killed too.
    r = run(ex, "sh", "sleep 310 & echo started");
    CHECK(r.exit_code == 0);
    r = run(ex, "sh", "ps -o args");
    CHECK(r.output.find("sleep 310") == std::string::npos);
}

TEST_CASE("interrupt() stops the block as a timeout would, with 130") {
    docker_executor ex(busybox());
    auto later = std::async(std::launch::async, [&] {
        std::this_thread::sleep_for(1s);
        ex.interrupt();
    });
    const auto started = steady::now();
    auto r = run(ex, "sh", "echo going; sleep 320");
    later.get();
    CHECK(r.exit_code == 130);
    CHECK(r.output.find("going\n") == 0);
    CHECK(r.output.find("Interrupted") != std::string::npos);
    CHECK(steady::now() - started < 15s);
    r = run(ex, "sh", "ps -o args");
    CHECK(r.output.find("sleep 320") == std::string::npos);
    // The interrupt was for that call only.
    CHECK(run(ex, "sh", "echo next").output == "next\n");
}

TEST_CASE("output is capped, its head and its tail kept, with a notice of the bytes dropped between") {
    docker_executor_options o = busybox();
    o.max_output = 1000;
    docker_executor ex(o);
    auto r = run(ex, "sh", "yes abcdefghi | head -c 3000000; echo the-last-line");
    CHECK(r.exit_code == 0);
    CHECK(r.truncated);
    CHECK(r.output.starts_with("abcdefghi\nabcdefghi\n"));
    // 600 bytes: 60 whole lines, so the notice starts a line of its own.
    const std::string notice = "[\u2026 " + std::to_string(3000000 + 14 - 1000) + " bytes dropped \u2026]\n";
    CHECK(r.output.substr(600, notice.size()) == notice);
    CHECK(r.output.ends_with("abcdefghi\nthe-last-line\n"));
    CHECK(r.output.size() == 1000 + notice.size());
}

TEST_CASE("the memory limit is enforced: a block allocating beyond it is killed, the container lives on") {
    docker_executor_options o = python();
    o.memory = 64u << 20;
    docker_executor ex(o);
    auto r = run(ex, "python", "print('allocating', flush=True)\nx = b'x' * (256 << 20)\nprint('survived')");
    CHECK(r.exit_code != 0);
    CHECK(r.output.starts_with("allocating\n"));
    CHECK(r.output.find("survived") == std::string::npos);
    CHECK(run(ex, "python", "x = b'x' * (16 << 20); print('small ok')").output == "small ok\n");
}

TEST_CASE("after every block nothing it started runs on: setsid env -i, nohup, double fork, env -u") {
    auto& d = suite();
    docker_executor ex(busybox(20s));
    const auto started = steady::now();
    auto r = run(ex, "sh",
                 "setsid env -i sleep 1000 &\n"
                 "nohup sleep 1001 > /dev/null 2>&1 &\n"
                 "(sh -c 'sleep 1002 > /dev/null 2>&1 &' &)\n"                    // double fork, orphaned
                 "setsid sh -c 'trap \"\" TERM HUP; exec env -u HOME sleep 1003' &\n"  // holds our stdout
                 "echo started\n");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "started\n");
    CHECK_FALSE(r.timed_out);
    CHECK(steady::now() - started < 15s);
    // Seen from the host, through the daemon: only the container's first process and its sleep.
    const auto left = block_processes(d.client, ex.container_id());
    CHECK_MESSAGE(left.empty(), joined_lines(left));
    const auto all = processes_of(d.client, ex.container_id());
    CHECK_MESSAGE(all.size() <= 2, joined_lines(all));
    // And from inside, by the next block: a /proc walk.
    r = run(ex, "sh", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c 'sleep 10[0-9][0-9]' || true");
    CHECK(r.output == "0\n");

    // A block that ends in error, and one that times out, leave nothing either.
    r = run(ex, "sh", "setsid sleep 1010 > /dev/null 2>&1 & exit 3");
    CHECK(r.exit_code == 3);
    CHECK(block_processes(d.client, ex.container_id()).empty());
}

TEST_CASE("a block over its timeout leaves nothing, even what kills the cleanup's first try") {
    auto& d = suite();
    docker_executor ex(busybox(3s));
    auto r = run(ex, "sh",
                 "setsid env -i sh -c 'while :; do sleep 1; done' > /dev/null 2>&1 &\n"
                 "sleep 1020\n");
    CHECK(r.timed_out);
    const auto left = block_processes(d.client, ex.container_id());
    CHECK_MESSAGE(left.empty(), joined_lines(left));
    CHECK(run(ex, "sh", "echo next").output == "next\n");
}

TEST_CASE("a fork bomb at the pids limit: the block is ended, the container cleaned or replaced, the next block runs") {
    auto& d = suite();
    docker_executor_options o = busybox(4s);
    o.pids_limit = 48;
    docker_executor ex(o);
    CHECK(run(ex, "sh", "echo kept > f").exit_code == 0);
    // In a session of its own, out of the block's process group. Whether the
    // block's own `sleep` still finds a free pid decides whether it ends with
    // a fork error or at its timeout; either way nothing may be left.
    auto r = run(ex, "sh", "setsid sh -c 'b() { b | b & }; b' > /dev/null 2>&1 & sleep 1030");
    CHECK(r.exit_code != 0);
    MESSAGE("fork bomb: " << r.output);
    const auto left = block_processes(d.client, ex.container_id());
    CHECK_MESSAGE(left.empty(), joined_lines(left));
    r = run(ex, "sh", "cat f");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "kept\n");
}

TEST_CASE("a process table kept full by a block that killed its wrapper: nothing left, the files kept, a replacement said") {
    // Every pid the limit allows is held by sleepers, three loops take each
    // pid that frees up, and the block's wrapper (whose kill -1 would end
    // them) is killed. The cleanup's exec then ends them (runc joins the
    // container's cgroup by migration, which pids.max does not refuse, and
    // its kill is a builtin) or, when even that exec cannot start, the
    // container is replaced and that is said; either way nothing is left and
    // what the block wrote is kept (with files "copy", fetched before the
    // old container goes).
    auto& d = suite();
    kernex::test::temp_dir work;
    docker_executor_options o = python(6s);
    o.pids_limit = 32;
    o.work_dir = work.path();
    docker_executor ex(o);
    CHECK(run(ex, "sh", "echo kept > f").exit_code == 0);
    const std::string first = ex.container_id();
    // Python, whose failed fork is an exception (a shell's ends the shell).
    auto r = run(ex, "python",
                 "import os, time\n"
                 "null = os.open('/dev/null', os.O_RDWR)\n"
                 "for fd in (0, 1, 2): os.dup2(null, fd)\n"
                 "def refill():\n"
                 "    while True:\n"
                 "        try:\n"
                 "            if os.fork() == 0:\n"
                 "                time.sleep(1000); os._exit(0)\n"
                 "        except OSError:\n"
                 "            pass\n"
                 "for _ in range(3):\n"
                 "    try:\n"  // the first refillers may fill the table before the last fork
                 "        if os.fork() == 0:\n"
                 "            refill()\n"
                 "    except OSError:\n"
                 "        pass\n"
                 "cur = 0\n"
                 "while cur < 32:\n"
                 "    for p in ('/sys/fs/cgroup/pids.current', '/sys/fs/cgroup/pids/pids.current'):\n"
                 "        if os.path.exists(p): cur = int(open(p).read())\n"
                 "open('table', 'w').write(f'{cur}\\n')\n"
                 "os.kill(os.getppid(), 9)\n"
                 "time.sleep(1000)\n");
    MESSAGE("full table: " << r.output);
    CHECK(r.exit_code != 0);
    const std::string table = kernex::test::read_file(work / "table");
    CHECK_MESSAGE(std::atoi(table.c_str()) >= 32, table);  // the block saw the table full (pids.current)
    const auto left = block_processes(d.client, ex.container_id());
    CHECK_MESSAGE(left.empty(), joined_lines(left));
    if (ex.container_id() != first) {
        CHECK(r.output.find("it was replaced by") != std::string::npos);
        CHECK_FALSE(has_container(d.client, first));
    }
    r = run(ex, "sh", "cat f table");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "kept\n" + table);
}

TEST_CASE("confinement by default: no caps, no-new-privileges, read-only root, no device node, no setuid-root file, limits") {
    auto& d = suite();
    kernex::test::temp_dir work;
    docker_executor_options o = busybox();
    o.work_dir = work.path();
    docker_executor ex(o);
    const auto info = d.client.call("GET", "/containers/" + ex.container_id() + "/json");
    const auto& host = info["HostConfig"];
    CHECK(host["CapDrop"] == nlohmann::json{"ALL"});
    CHECK(host["SecurityOpt"] == nlohmann::json{"no-new-privileges"});
    CHECK(host["ReadonlyRootfs"] == true);
    CHECK(host["Memory"].get<std::int64_t>() == std::int64_t{1} << 30);
    CHECK(host["PidsLimit"].get<std::int64_t>() == 256);
    CHECK(host["NetworkMode"] == "none");

    auto r = run(ex, "sh", "grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs):' /proc/self/status; id -u");
    CHECK(r.output == "CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n"
                      "NoNewPrivs:\t1\n" + std::to_string(::getuid()) + "\n");
    // The root is read-only, /tmp a tmpfs (nosuid, nodev), HOME in it.
    r = run(ex, "sh", "touch /evil 2>/dev/null && echo wrote-root; touch /tmp/ok && echo tmp; echo $HOME; "
                      "grep ' /tmp ' /proc/mounts | grep -c nosuid,nodev");
    CHECK(r.output == "tmp\n/tmp\n1\n");
    // No device node in the work dir (CAP_MKNOD is dropped), not even as root.
    r = run(ex, "sh", "mknod ./mem c 1 1 2>/dev/null && echo made-char; mknod ./disk b 8 0 2>/dev/null && echo made-block; "
                      "ls /dev");
    CHECK(r.output.find("made-") == std::string::npos);
    CHECK_FALSE(fs::exists(work.path() / "mem"));
    CHECK_FALSE(fs::exists(work.path() / "disk"));
    for (const char* dev : {"sda", "vda", "mem", "kmsg"}) CHECK(r.output.find(std::string(dev) + "\n") == std::string::npos);
    // Nor a file owned by another user (CAP_CHOWN), nor one the host could run setuid-root.
    r = run(ex, "sh", "cp /bin/busybox ./suid && chmod 4755 ./suid; mkdir -p d && cp /bin/busybox d/sgid && chmod 2755 d/sgid; "
                      "touch mine; chown 4242 mine 2>/dev/null && echo chowned; echo done");
    CHECK(r.output.find("chowned") == std::string::npos);
    struct stat st {};
    REQUIRE(::stat((work.path() / "mine").c_str(), &st) == 0);
    CHECK(st.st_uid == ::getuid());
    for (const char* name : {"suid", "d/sgid"}) {
        REQUIRE(::stat((work.path() / name).c_str(), &st) == 0);
        CHECK_MESSAGE((st.st_mode & (S_ISUID | S_ISGID)) == 0, name << " keeps its mode " << std::oct << st.st_mode);
    }
    // Bind: the bits are cleared in place; copy: files come back 0600/0700.
    if (ex.files_mode() == "bind")
        CHECK(r.output.find("kernex: cleared the setuid/setgid bits of 2 files") != std::string::npos);
    r = run(ex, "sh", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max");
    CHECK(r.output == "256\n");
}

TEST_CASE("the work dir is mounted nosuid,nodev in the container when kernex may mount (root, the daemon's mount namespace)") {
    // Docker cannot set the flags on a bind (moby#12143); kernex binds the
    // dir from a nosuid,nodev mount of its own (src/docker/nosuid_bind.hpp).
    auto& d = suite();
    if (::geteuid() != 0) {
        MESSAGE("skipped: kernex can make the mount as root only");
        return;
    }
    // The resident runner's container, and the exec path's, which starts a
    // stopped container again (ensure_running) instead of making a new one.
    for (const bool resident_runner : {true, false}) {
        CAPTURE(resident_runner);
        kernex::test::temp_dir work;
        docker_executor_options o = busybox();
        o.work_dir = work.path();
        o.resident_runner = resident_runner;
        std::string point;
        {
            docker_executor ex(o);
            if (ex.files_mode() != "bind") return;
            auto r = run(ex, "sh", "grep ' /workspace ' /proc/mounts | cut -d' ' -f4 | tr , '\\n' | grep -xE 'nosuid|nodev'; "
                                   "echo kept > made-inside");
            CHECK(r.output == "nosuid\nnodev\n");
            // The container sees the work dir itself (not a copy, not an empty dir).
            CHECK(kernex::test::read_file(work.path() / "made-inside") == "kept\n");
            // The mount kernex made lived for the container's start only; its
            // point stays, empty, for another start of the same container.
            point = kernex::test::work_dir_mount_point(d.client, ex.container_id());
            REQUIRE_FALSE(point.empty());
            CHECK_FALSE(kernex::test::mounted_at(point));
            CHECK(fs::is_empty(point));
            // A container that stopped: the next block runs in it started again
            // (exec path) or in a new one (runner), with the same dir, nosuid,nodev.
            d.client.call("POST", "/containers/" + ex.container_id() + "/kill");
            const auto until = std::chrono::steady_clock::now() + 20s;
            while (d.client.call("GET", "/containers/" + ex.container_id() + "/json")["State"]["Running"] == true &&
                   std::chrono::steady_clock::now() < until)
                std::this_thread::sleep_for(20ms);
            r = run(ex, "sh", "grep ' /workspace ' /proc/mounts | cut -d' ' -f4 | tr , '\\n' | grep -xE 'nosuid|nodev'; "
                              "cat made-inside");
            CHECK(r.output == "nosuid\nnodev\nkept\n");
            CHECK_FALSE(kernex::test::mounted_at(point));
        }
        CHECK_FALSE(fs::exists(point));
        CHECK(fs::exists(work.path() / "made-inside"));  // what the dir held is untouched
    }
}

TEST_CASE("each default loosened explicitly: writable root, no limits, privileges, a capability") {
    auto& d = suite();
    auto ex = kernex::make_executor({{"executor", "docker"},
                                     {"image", kernex::test::busybox_image},
                                     {"docker_host", d.daemon.host()},
                                     {"memory", 0},
                                     {"pids_limit", 0},
                                     {"read_only", false},
                                     {"no_new_privileges", false},
                                     {"cap_add", {"CHOWN"}},
                                     {"timeout", 20}});
    auto* docker = dynamic_cast<docker_executor*>(ex.get());
    REQUIRE(docker != nullptr);
    const auto host = d.client.call("GET", "/containers/" + docker->container_id() + "/json")["HostConfig"];
    CHECK(host["Memory"].get<std::int64_t>() == 0);
    CHECK((host["PidsLimit"].is_null() || host["PidsLimit"].get<std::int64_t>() <= 0));
    CHECK(host["ReadonlyRootfs"] == false);
    CHECK(host["CapAdd"] == nlohmann::json{"CHOWN"});
    CHECK((host["SecurityOpt"].is_null() || host["SecurityOpt"].empty()));
    auto r = ex->execute({{"sh", "grep ' / ' /proc/mounts | grep -c ' ro,' || true; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status"}});
    CHECK(r.output == "0\nCapEff:\t0000000000000001\nNoNewPrivs:\t0\n");
}

TEST_CASE("limits, network and mounts as configured through make_executor") {
    auto& d = suite();
    auto ex = kernex::make_executor({{"executor", "docker"},
                                     {"image", kernex::test::busybox_image},
                                     {"docker_host", d.daemon.host()},
                                     {"memory", "96m"},
                                     {"cpus", 0.5},
                                     {"pids_limit", 64},
                                     {"container_name", "kernex-test-limits"},
                                     {"timeout", 20}});
    auto* docker = dynamic_cast<docker_executor*>(ex.get());
    REQUIRE(docker != nullptr);
    CHECK(docker->container_name() == "kernex-test-limits");
    const auto info = d.client.call("GET", "/containers/" + docker->container_id() + "/json");
    const auto& host = info["HostConfig"];
    CHECK(host["Memory"].get<std::int64_t>() == 96 << 20);
    CHECK(host["MemorySwap"].get<std::int64_t>() == 96 << 20);
    CHECK(host["NanoCpus"].get<std::int64_t>() == 500'000'000);
    CHECK(host["PidsLimit"].get<std::int64_t>() == 64);
    CHECK(host["NetworkMode"].get<std::string>() == "none");
    CHECK(info["Config"]["WorkingDir"].get<std::string>() == "/");  // the blocks' own is /workspace
    CHECK(host["Binds"][0].get<std::string>().ends_with(":/workspace:rw"));
    auto r = ex->execute({{"sh", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"}});
    CHECK(r.output == "64\n");

    CHECK_THROWS_AS(kernex::make_executor({{"executor", "docker"}, {"memory", "lots"}}), kernex::error);
    CHECK_THROWS_AS(kernex::make_executor({{"executor", "docker"}, {"auto_remove", "yes"}}), kernex::error);
    CHECK_THROWS_AS(kernex::make_executor({{"executor", "docker"}, {"volumes", "/"}}), kernex::error);
}

TEST_CASE("stop() and the destructor leave no container; auto_remove and stop_container as AG2") {
    auto& d = suite();
    std::string id;
    {
        docker_executor ex(busybox());
        id = ex.container_id();
        CHECK(has_container(d.client, id));
        ex.stop();
        CHECK_FALSE(has_container(d.client, id));
        ex.stop();  // idempotent
        // A later execute() makes a new one, and the destructor removes it.
        CHECK(run(ex, "sh", "echo again").output == "again\n");
        id = ex.container_id();
        CHECK(has_container(d.client, id));
    }
    CHECK_FALSE(has_container(d.client, id));

    docker_executor_options keep = busybox();
    keep.auto_remove = false;
    {
        docker_executor ex(keep);
        id = ex.container_id();
    }
    auto state = d.client.call("GET", "/containers/" + id + "/json")["State"];
    CHECK(state["Running"].get<bool>() == false);
    d.client.call("DELETE", "/containers/" + id + "?force=true");

    keep.stop_container = false;
    keep.work_dir = fs::temp_directory_path() / ("kernex-keep-" + std::to_string(::getpid()));
    {
        docker_executor ex(keep);
        id = ex.container_id();
    }
    state = d.client.call("GET", "/containers/" + id + "/json")["State"];
    CHECK(state["Running"].get<bool>() == true);
    d.client.call("DELETE", "/containers/" + id + "?force=true");
    fs::remove_all(*keep.work_dir);
}

TEST_CASE("restart() gives a fresh container: its processes are gone, the work dir stays") {
    docker_executor ex(busybox());
    CHECK(run(ex, "sh", "echo kept > f; sleep 330 > /dev/null 2>&1 & setsid sleep 331 > /dev/null 2>&1 &").exit_code == 0);
    ex.restart();
    auto r = run(ex, "sh", "cat f; ps -o args | grep -c 'sleep 33[01]' || true");
    CHECK(r.output == "kept\n0\n");
}

TEST_CASE("a container killed under a running block: a clear message, no hang, and the next call works") {
    auto& d = suite();
    docker_executor ex(busybox());
    const std::string id = ex.container_id();
    auto killer = std::async(std::launch::async, [&] {
        std::this_thread::sleep_for(1s);
        auto client = d.daemon.client();
        client.call("POST", "/containers/" + id + "/kill");
    });
    const auto started = steady::now();
    auto r = run(ex, "sh", "echo start; sleep 340");
    killer.get();
    CHECK(steady::now() - started < 20s);
    CHECK(r.exit_code == 1);
    CHECK(r.output.starts_with("start\n"));
    CHECK_MESSAGE(r.output.find("stopped while the block ran") != std::string::npos, r.output);
    r = run(ex, "sh", "echo back");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "back\n");
}

TEST_CASE("errors: missing image, unreachable daemon, bad DOCKER_HOST") {
    auto& d = suite();
    docker_executor_options o = busybox();
    o.image = "kernex-test/no-such-image:1";
    try {
        docker_executor ex(o);
        FAIL("no exception");
    } catch (const kernex::error& e) {
        CHECK(e.code() == kernex::errc::not_found);
        CHECK(std::string(e.what()).find("docker pull kernex-test/no-such-image:1") != std::string::npos);
    }
    CHECK(container_ids(d.client).empty());

    o = busybox();
    o.docker_host = "unix:///nonexistent/docker.sock";
    o.tls = {};
    try {
        docker_executor ex(o);
        FAIL("no exception");
    } catch (const kernex::error& e) {
        CHECK(e.code() == kernex::errc::docker_error);
        CHECK(std::string(e.what()).find("DOCKER_HOST") != std::string::npos);
        CHECK(std::string(e.what()).find("dockerd") != std::string::npos);
    }
    o.docker_host = "ssh://somewhere";
    CHECK_THROWS_AS(docker_executor{o}, kernex::error);
}

TEST_CASE("DOCKER_HOST: tcp://127.0.0.1 and the environment") {
    auto& d = suite();
    const std::string tcp = "tcp://127.0.0.1:" + std::to_string(d.tcp_port);
    kernex::docker_client client({.host = tcp, .tls = d.tls(), .timeout = 10s});
    CHECK(client.ping(5s));
    CHECK(client.api_version() == "1.41");

    ::setenv("DOCKER_HOST", tcp.c_str(), 1);
    docker_executor_options o = busybox();
    o.docker_host.clear();  // from the environment
    {
        docker_executor ex(o);
        CHECK(run(ex, "sh", "echo over tcp").output == "over tcp\n");
    }
    ::unsetenv("DOCKER_HOST");
    CHECK(kernex::default_docker_host() == "unix:///var/run/docker.sock");
}

TEST_CASE("docker_client: exec streams, exit codes and deadlines") {
    auto& d = suite();
    docker_executor ex(busybox());
    auto client = d.daemon.client();
    std::string out, err;
    auto exec = client.create_exec(ex.container_id(), {.cmd = {"sh", "-c", "echo out; echo err >&2; exit 4"},
                                                       .env = {},
                                                       .working_dir = "",
                                                       .user = ""});
    auto end = client.start_exec(exec, {.deadline = steady::now() + 10s,
                                        .on_output =
                                            [&](kernex::docker_stream s, std::string_view text) {
                                                (s == kernex::docker_stream::standard_error ? err : out) += text;
                                            },
                                        .cancel_fd = -1});
    CHECK(end == kernex::docker_stream_end::finished);
    CHECK(out == "out\n");
    CHECK(err == "err\n");
    std::optional<int> code;
    for (int i = 0; i < 500 && !(code = client.exec_exit_code(exec)); ++i) std::this_thread::sleep_for(2ms);
    CHECK(code == 4);

    exec = client.create_exec(ex.container_id(), {.cmd = {"sleep", "5"}, .env = {}, .working_dir = "", .user = ""});
    const auto started = steady::now();
    end = client.start_exec(exec, {.deadline = steady::now() + 300ms, .on_output = {}, .cancel_fd = -1});
    CHECK(end == kernex::docker_stream_end::timed_out);
    CHECK(steady::now() - started < 3s);

    try {
        client.call("GET", "/containers/no-such-container/json");
        FAIL("no exception");
    } catch (const kernex::error& e) {
        CHECK(e.code() == kernex::errc::not_found);
    }
}

TEST_CASE("kernex exec --executor docker --image IMAGE") {
    auto& d = suite();
    kernex::test::temp_dir work;
    std::ofstream(work.path() / "message.md") << "Run this:\n```sh\necho from the cli\nls /sys/class/net\n```\n";
    const auto [code, result] = run_exec_json(kernex_exec_json(work.path() / "message.md"), 60s);
    CHECK(code == 0);
    CHECK(result["exit_code"] == 0);
    CHECK(result["output"] == "from the cli\nlo\n");
    REQUIRE(result["notes"].size() == 1);
    const char* files = std::getenv("KERNEX_TEST_DOCKER_FILES");
    CHECK(result["notes"][0].get<std::string>().starts_with(files ? std::string("files: ") + files : "files: bind"));
    CHECK(container_ids(d.client).empty());
}

TEST_CASE("kernex exec in a container: --timeout per block (blocks under it run past it together), --env, every block checked first, the container flags") {
    auto& d = suite();
    kernex::test::temp_dir work;
    const auto message = work.path() / "message.md";
    // Three blocks of 3 s (9 s together) under --timeout 8, then one over it.
    std::ofstream(message) << "```sh\nsleep 3; echo one $GREETING\n```\n```sh\nsleep 3; echo two\n```\n"
                              "```sh\nsleep 3; echo three\n```\n```sh\necho four; sleep 300\n```\n"
                              "```sh\necho never\n```\n";
    const auto started = steady::now();
    // kernex exec's --env reaches the container too.
    const auto [code, result] = run_exec_json(kernex_exec_json(message, {"--timeout", "8", "--env", "GREETING=hi"}), 120s);
    CHECK(steady::now() - started < 100s);  // not the 300 s sleep: no hang
    CHECK(code == 124);
    CHECK(result["exit_code"] == 124);
    CHECK(result["timed_out"] == true);
    CHECK(result["blocks"] == 4);
    CHECK(result["output"] == "one hi\ntwo\nthree\nfour\nTimeout: the code ran longer than 8 s and was stopped\n");
    CHECK(container_ids(d.client).empty());

    // A block the executor cannot run refuses the message whole: the sh block before it does not run.
    std::ofstream(message, std::ios::trunc) << "```sh\necho first-block-ran\n```\n```ruby\nputs 1\n```\n";
    const auto [refused, whole] = run_exec_json(kernex_exec_json(message), 120s);
    CHECK(refused == 1);
    CHECK(whole["blocks"] == 0);
    CHECK(whole["output"].get<std::string>().find("first-block-ran") == std::string::npos);
    CHECK(whole["output"].get<std::string>().find("unknown language 'ruby'") != std::string::npos);
    CHECK(container_ids(d.client).empty());

    // The container flags reach the container: its name, a capability kept,
    // setuid allowed, and the stopped container kept (removed here).
    std::ofstream(message, std::ios::trunc) << "```sh\ngrep -E '^(CapEff|NoNewPrivs):' /proc/self/status\n```\n";
    const auto [flagged, kept] =
        run_exec_json(kernex_exec_json(message, {"--container-name", "kernex-exec-flags", "--cap-add", "CHOWN",
                                                 "--new-privileges", "--no-auto-remove", "--request-timeout", "20",
                                                 "--memory", "96m", "--cpus", "0.5", "--pids-limit", "64",
                                                 "--network", "none", "--no-read-only"}),
                      120s);
    CHECK(flagged == 0);
    CHECK(kept["output"] == "CapEff:\t0000000000000001\nNoNewPrivs:\t0\n");
    const auto info = d.client.call("GET", "/containers/kernex-exec-flags/json");
    CHECK(info["Name"] == "/kernex-exec-flags");
    CHECK(info["State"]["Running"] == false);
    CHECK(info["HostConfig"]["CapAdd"] == nlohmann::json{"CHOWN"});
    // The limits' flags, as kernex run's and kernel start's (issue 12 item 4).
    CHECK(info["HostConfig"]["Memory"] == 96 << 20);
    CHECK(info["HostConfig"]["NanoCpus"] == 500'000'000);
    CHECK(info["HostConfig"]["PidsLimit"] == 64);
    CHECK(info["HostConfig"]["NetworkMode"] == "none");
    CHECK(info["HostConfig"]["ReadonlyRootfs"] == false);
    d.client.call("DELETE", "/containers/kernex-exec-flags?force=true");
    CHECK(container_ids(d.client).empty());
}

TEST_CASE("kill -9 of kernex exec mid-block: within 5 s neither its container nor its temporary work dir is left") {
    auto& d = suite();
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    REQUIRE(build != nullptr);
    kernex::test::temp_dir in;
    std::ofstream(in.path() / "message.md") << "```sh\necho started\nsleep 300\n```\n";
    const auto left = kernex::test::kill9_mid_run(
        d.client,
        {(fs::path(build) / "src" / "cli" / "kernex").string(), "exec", "--executor", "docker", "--image",
         kernex::test::busybox_image, (in.path() / "message.md").string()},
        d.daemon.host(), "started\n", 5s);
    REQUIRE_MESSAGE(left.found, left.output);
    REQUIRE(left.dirs.size() == 1);
    CHECK_FALSE(left.container_left);
    CHECK_MESSAGE(left.dirs_left.empty(), left.dirs_left[0]);
}

TEST_CASE("kill -9 of kernex exec as a user: dirs the code made unreadable or read-only do not keep the temporary work dir") {
    // As a user (root's rights pass over modes), the blocks run as that user
    // in the container; the reaper's removal gives such dirs their owner's
    // rights back (rm -rf left them, and the whole tree with them).
    auto& d = suite();
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    REQUIRE(build != nullptr);
    const passwd* nobody = ::getpwnam("nobody");
    REQUIRE(nobody != nullptr);
    kernex::test::temp_dir home;
    fs::permissions(home.path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    const fs::path tmp = home.path() / "tmp", state = home.path() / "state";
    for (const auto& dir : {tmp, state}) {
        fs::create_directory(dir);
        REQUIRE(::chown(dir.c_str(), nobody->pw_uid, nobody->pw_gid) == 0);
    }
    std::ofstream(home.path() / "message.md")
        << "```sh\nmkdir -p d/e; touch d/e/f; chmod 500 d; mkdir z; chmod 000 z; chmod 500 .\necho started\nsleep 300\n```\n";
    fs::permissions(home.path() / "message.md", fs::perms::others_read, fs::perm_options::add);
    // The suite's daemon, for that user too while the test runs.
    const fs::path socket = d.daemon.host().substr(std::string_view("unix://").size());
    const auto socket_dir_perms = fs::status(socket.parent_path()).permissions();
    fs::permissions(socket.parent_path(), fs::perms::others_exec, fs::perm_options::add);
    fs::permissions(socket, fs::perms::others_read | fs::perms::others_write, fs::perm_options::add);
    struct restore {
        fs::path socket;
        fs::perms dir;
        ~restore() {
            std::error_code ec;
            fs::permissions(socket, fs::perms::others_read | fs::perms::others_write, fs::perm_options::remove, ec);
            fs::permissions(socket.parent_path(), dir, ec);
        }
    } restore_later{socket, socket_dir_perms};
    const std::string id = std::to_string(nobody->pw_uid), gid = std::to_string(nobody->pw_gid);
    const auto left = kernex::test::kill9_mid_run(
        d.client,
        {"/usr/bin/setpriv", "--reuid=" + id, "--regid=" + gid, "--clear-groups", "/usr/bin/env",
         "TMPDIR=" + tmp.string(), "XDG_STATE_HOME=" + state.string(), "HOME=/nonexistent",
         (fs::path(build) / "src" / "cli" / "kernex").string(), "exec", "--executor", "docker", "--image",
         kernex::test::busybox_image, (home.path() / "message.md").string()},
        d.daemon.host(), "started\n", 5s);
    REQUIRE_MESSAGE(left.found, left.output);
    REQUIRE(left.dirs.size() == 1);
    CHECK(left.dirs[0].parent_path() == tmp);
    CHECK(left.mount_points.empty());  // a user cannot mount: the dir itself is bound
    CHECK_FALSE(left.container_left);
    CHECK_MESSAGE(left.dirs_left.empty(), left.dirs_left[0]);
    std::error_code ec;
    CHECK(fs::is_empty(tmp, ec));
}

TEST_CASE("kernex killed with its container reaper: the next kernex start of any command removes what it left") {
    auto& d = suite();
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    REQUIRE(build != nullptr);
    const fs::path kernex_exe = fs::path(build) / "src" / "cli" / "kernex";
    kernex::test::temp_dir in;
    std::ofstream(in.path() / "message.md") << "```sh\necho started\nsleep 300\n```\n";
    const auto left = kernex::test::kill9_mid_run(
        d.client,
        {kernex_exe.string(), "exec", "--executor", "docker", "--image", kernex::test::busybox_image,
         (in.path() / "message.md").string()},
        d.daemon.host(), "started\n", 2s, true);
    REQUIRE_MESSAGE(left.found, left.output);
    REQUIRE(left.dirs.size() == 1);
    // Nothing removed them: the reaper died with kernex (as root, the work
    // dir's mount point too, which the sweep unmounts and removes).
    REQUIRE(left.container_left);
    REQUIRE(left.dirs_left.size() == 1 + left.mount_points.size());
    // The ledger names the daemon; no DOCKER_HOST is needed to find it again.
    kernex::spawn_options version;
    version.argv = {kernex_exe.string(), "--version"};
    version.env = {{"DOCKER_HOST", "unix:///nonexistent/docker.sock"}};
    const auto r = kernex::run_process(version, {});
    CHECK(r.exit_code == 0);
    CHECK(r.output == "kernex 0.1.0\n");
    CHECK(d.client.request("GET", "/containers/" + left.container + "/json").status == 404);
    CHECK_FALSE(fs::exists(left.dirs[0]));
    for (const auto& point : left.mount_points) CHECK_FALSE(fs::exists(point));
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(kernex::docker::ledger_dir(), ec))  // <pid>-<start>-<random>.json
        CHECK_FALSE(entry.path().filename().string().starts_with(std::to_string(left.pid) + "-"));
}

TEST_CASE("ledger entries kernex did not write whole, or a week old, are dropped at the next start; a living owner's stays") {
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    REQUIRE(build != nullptr);
    kernex::test::temp_dir state;
    const fs::path dir = state.path() / "kernex" / "containers";
    fs::create_directories(dir);
    const std::string me = std::to_string(::getpid()) + "-" + kernex::docker::process_start_time(std::to_string(::getpid()));
    kernex::test::write_file(dir / "999999998-1-aaaa.json", R"({"tls": {"verify": false}})");  // no host
    kernex::test::write_file(dir / "999999997-1-bbbb.json", "{\"host\": ");                   // cut short
    kernex::test::write_file(dir / "999999996-1-cccc.json", R"({"host": "unix:///x"})");      // no tls
    kernex::test::write_file(dir / (me + "-dddd.json"), R"({"host": "unix:///nonexistent/docker.sock", "tls": {"verify": false}})");
    // A dead owner's daemon that does not answer: given up on after a week, tried again later before.
    const auto written = [](std::chrono::hours ago) {
        return std::to_string(
            std::chrono::duration_cast<std::chrono::seconds>((std::chrono::system_clock::now() - ago).time_since_epoch())
                .count());
    };
    const std::string gone = R"("host": "unix:///nonexistent/docker.sock", "tls": {"verify": false})";
    kernex::test::write_file(dir / "999999995-1-eeee.json", "{" + gone + R"(, "written": )" + written(24h * 8) + "}");
    kernex::test::write_file(dir / "999999994-1-ffff.json", "{" + gone + R"(, "written": )" + written(24h * 6) + "}");
    kernex::spawn_options version;
    version.argv = {(fs::path(build) / "src" / "cli" / "kernex").string(), "--version"};
    version.env = {{"XDG_STATE_HOME", state.path().string()}};
    const auto r = kernex::run_process(version, {});
    CHECK(r.exit_code == 0);
    std::vector<std::string> left;
    for (const auto& entry : fs::directory_iterator(dir)) left.push_back(entry.path().filename().string());
    std::vector<std::string> kept = {"999999994-1-ffff.json", me + "-dddd.json"};
    std::sort(left.begin(), left.end());
    std::sort(kept.begin(), kept.end());
    CHECK(left == kept);
}

TEST_CASE("the containers of kernex processes that died are swept at the next start, with their temporary dirs") {
    auto& d = suite();
    auto make = [&](const std::map<std::string, std::string>& labels) {
        kernex::docker::container_config config;
        config.image = kernex::test::busybox_image;
        config.name = "kernex-sweep-" + kernex::docker::random_hex(8);
        config.cmd = {"sleep", "600"};
        config.labels = labels;
        const std::string id = kernex::docker::create_container(d.client, config);
        kernex::docker::start_container(d.client, id, config.image, "");
        return id;
    };
    auto temp = [](const char* prefix) {
        std::string pattern = (fs::temp_directory_path() / (std::string(prefix) + "XXXXXX")).string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        kernex::test::write_file(fs::path(pattern) / "f", "x");
        return pattern;
    };
    const std::string dead_dir = temp("kernex-swept-");
    const std::string reused_dir = temp("kernex-swept-");
    const std::string foreign_dir = temp("not-kernex-");
    auto labels = kernex::docker::owner_labels({dead_dir, foreign_dir});
    labels["org.kernex.owner.pid"] = "999999999";  // no such process
    const std::string dead = make(labels);
    labels = kernex::docker::owner_labels({reused_dir});
    labels["org.kernex.owner.start"] = "1";  // our pid, but another process's start: a reused pid
    const std::string reused = make(labels);
    const std::string alive = make(kernex::docker::owner_labels());
    labels = kernex::docker::owner_labels();
    labels["org.kernex.owner.boot"] = "another-boot";  // another host or boot: not ours to judge
    labels["org.kernex.owner.pid"] = "999999999";
    const std::string elsewhere = make(labels);

    {
        docker_executor ex(busybox());
        CHECK_FALSE(has_container(d.client, dead));
        CHECK_FALSE(has_container(d.client, reused));
        CHECK(has_container(d.client, alive));
        CHECK(has_container(d.client, elsewhere));
        CHECK_FALSE(fs::exists(dead_dir));
        CHECK_FALSE(fs::exists(reused_dir));
        CHECK(fs::exists(foreign_dir));  // not a name kernex makes
    }
    for (const auto& id : {alive, elsewhere}) d.client.call("DELETE", "/containers/" + id + "?force=true");
    fs::remove_all(foreign_dir);
}

// Last: it has a daemon of its own, stopped under a running block.
TEST_CASE("the daemon stopped under a running block: an error, not a hang") {
    kernex::test::test_dockerd daemon;
    {
        auto client = daemon.client();
        kernex::test::ensure_busybox_image(client);
    }
    docker_executor_options o;
    o.image = kernex::test::busybox_image;
    o.docker_host = daemon.host();
    o.timeout = 120s;
    o.request_timeout = 10s;
    docker_executor ex(o);
    CHECK(run(ex, "sh", "echo up").output == "up\n");
    auto stopper = std::async(std::launch::async, [&] {
        std::this_thread::sleep_for(1s);
        ::kill(daemon.pid(), SIGTERM);
    });
    const auto started = steady::now();
    std::string what;
    kernex::code_result r;
    try {
        r = run(ex, "sh", "echo running; sleep 350");
    } catch (const kernex::error& e) {
        CHECK(e.code() == kernex::errc::docker_error);
        what = e.what();
    }
    stopper.get();
    const auto took = steady::now() - started;
    MESSAGE("daemon stopped: " << (what.empty() ? r.output : what));
    CHECK(took < 40s);
    CHECK_FALSE(what.empty());
    CHECK(what.find("Docker daemon") != std::string::npos);
    ex.stop();  // noexcept, quick, with the daemon gone
    CHECK(steady::now() - started < 60s);
}

// ---- TLS: a dockerd of its own with --tlsverify on 127.0.0.1 (certificates
// made here with the openssl CLI), the suite's plain port for the mismatch.

namespace {

// The TLS dockerd with the busybox image, imported over TLS (import_image's
// upload through the TLS stream).
struct tls_suite : kernex::test::tls_dockerd {
    tls_suite() {
        auto c = client(120s);
        REQUIRE(c.uses_tls());
        kernex::test::ensure_busybox_image(c);
    }
};

tls_suite& tls() { return kernex::test::suite_once<tls_suite>("the TLS dockerd"); }

// Sets (or, with nullptr, unsets) an environment variable for a scope.
struct scoped_env {
    std::string name;
    std::optional<std::string> old;
    scoped_env(std::string n, const char* value) : name(std::move(n)) {
        if (const char* v = std::getenv(name.c_str())) old = v;
        if (value) ::setenv(name.c_str(), value, 1);
        else ::unsetenv(name.c_str());
    }
    ~scoped_env() {
        if (old) ::setenv(name.c_str(), old->c_str(), 1);
        else ::unsetenv(name.c_str());
    }
};

// The message of the kernex::error that making an executor with o throws,
// checked to come within bound.
std::string tls_failure(const docker_executor_options& o, kernex::errc code = kernex::errc::docker_error) {
    const auto started = steady::now();
    try {
        docker_executor ex(o);
    } catch (const kernex::error& e) {
        CHECK(e.code() == code);
        CHECK(steady::now() - started < 30s);
        return e.what();
    }
    FAIL("no exception");
    return {};
}

bool has(const std::string& text, std::string_view part) {
    const bool found = text.find(part) != std::string::npos;
    if (!found) MESSAGE("looked for '" << std::string(part) << "' in: " << text);
    return found;
}

}  // namespace

TEST_CASE("TLS: blocks run through the docker executor on a --tlsverify daemon, by options and by DOCKER_* variables") {
    auto& t = tls();
    scoped_env no_verify("DOCKER_TLS_VERIFY", nullptr);
    docker_executor_options o = busybox();
    o.docker_host = t.host;
    o.tls = t.tls();
    {
        o.files.clear();
        docker_executor ex(o);
        // The upgraded exec stream over TLS: stdout and stderr, in order, and the exit code.
        const auto r = run(ex, "sh", "echo over tls; echo to stderr >&2; exit 3");
        CHECK(r.exit_code == 3);
        CHECK(r.output == "over tls\nto stderr\n");
        // A tcp:// daemon may be another machine: files travel through the API by default.
        CHECK(ex.files_mode() == "copy");
        REQUIRE(r.notes.size() == 1);
        CHECK(r.notes[0].starts_with("files: copy"));
        CHECK(run(ex, "sh", "echo back > came-back.txt").exit_code == 0);
        CHECK(kernex::test::read_file(ex.work_dir() / "came-back.txt") == "back\n");
        CHECK(run(ex, "sh", "seq 1 20000 | tail -n 1").output == "20000\n");
        // The resident runner over TLS: the attached stream is taken over on
        // the TLS connection; pid 1 is the runner, the blocks (and their
        // files, both ways) cost the daemon no exec and no archive request.
        CHECK_MESSAGE(through_runner(r), r.notes[0]);
        kernex::docker_client tls_client = t.client(10s);
        const std::string id = ex.container_id();
        const auto init = std::to_string(tls_client.call("GET", "/containers/" + id + "/json")["State"].value("Pid", 0L));
        std::string first;
        const auto top = tls_client.call("GET", "/containers/" + id + "/top?ps_args=-o%20pid,args");
        for (const auto& p : top["Processes"])
            if (p[0].get<std::string>() == init) first = p[1].get<std::string>();
        CHECK_MESSAGE(first == "/.kernex/kernex-runner", "init " << init << ": " << top.dump());
        const auto puts = event_count(tls_client, id, "extract-to-dir");
        const auto gets = event_count(tls_client, id, "archive-path");
        const auto big = run(ex, "sh", "# filename: w/big.sh\nhead -c 300000 /dev/zero | tr '\\0' x > big.txt; echo 1 >&2; exit 5");
        CHECK(big.exit_code == 5);
        CHECK(big.output == "1\n");
        CHECK(fs::file_size(ex.work_dir() / "big.txt") == 300000);
        CHECK(event_count(tls_client, id, "extract-to-dir") == puts);
        CHECK(event_count(tls_client, id, "archive-path") == gets);
        CHECK(exec_count(tls_client, id) == 0);
        // An interrupt and a timeout reach the runner over TLS as over a socket.
        docker_executor_options short_o = o;
        short_o.timeout = 2s;
        docker_executor timed(short_o);
        const auto slow = run(timed, "sh", "echo started; sleep 30");
        CHECK(slow.timed_out);
        CHECK(slow.output.starts_with("started\n"));
        CHECK(run(timed, "sh", "echo after").output == "after\n");
    }
    // By host name (the certificate names localhost too), from the environment as the docker CLI reads it.
    scoped_env host("DOCKER_HOST", ("tcp://localhost:" + std::to_string(t.port)).c_str());
    scoped_env verify("DOCKER_TLS_VERIFY", "1");
    scoped_env path("DOCKER_CERT_PATH", (t.certs / "docker").c_str());
    o.docker_host.clear();
    o.tls = {};
    {
        docker_executor ex(o);
        CHECK(run(ex, "sh", "echo from the environment").output == "from the environment\n");
    }
    kernex::docker_client client({.timeout = 10s});
    CHECK(client.uses_tls());
    CHECK(client.warning().empty());
    CHECK(client.api_version() == "1.41");
    // No container is left on the TLS daemon.
    CHECK(container_ids(client).empty());
}

TEST_CASE("TLS: kernex exec --docker-host --tls-ca --tls-cert --tls-key") {
    auto& t = tls();
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    REQUIRE(build != nullptr);
    kernex::test::temp_dir work;
    std::ofstream(work.path() / "message.md") << "```sh\necho tls from the cli\n```\n";
    kernex::spawn_options spawn;
    spawn.argv = {(fs::path(build) / "src" / "cli" / "kernex").string(), "exec", "--executor", "docker", "--image",
                  kernex::test::busybox_image, "--docker-host", t.host, "--tls-ca", (t.certs / "ca.pem").string(),
                  "--tls-cert", (t.certs / "client.pem").string(), "--tls-key",
                  (t.certs / "client-key.pem").string(), (work.path() / "message.md").string()};
    spawn.merge_stderr = false;
    kernex::run_options limits;
    limits.timeout = 60s;
    auto r = kernex::run_process(spawn, limits);
    CHECK(r.exit_code == 0);
    CHECK(r.output == "tls from the cli\n");
    // The same daemon with plain HTTP: refused, saying why.
    spawn.argv = {(fs::path(build) / "src" / "cli" / "kernex").string(), "exec", "--executor", "docker", "--image",
                  kernex::test::busybox_image, "--docker-host", t.host, "--no-tls-verify",
                  (work.path() / "message.md").string()};
    spawn.merge_stderr = true;
    r = kernex::run_process(spawn, limits);
    CHECK(r.exit_code == 2);
    CHECK(has(r.output, "speaks TLS on this port"));
}

TEST_CASE("TLS: kill -9 of kernex exec mid-block: within 5 s neither its container nor its temporary work dir is left") {
    // The reaper of a TLS daemon is kernex-reaper, a program of its own
    // (a forked child of a threaded process must not use OpenSSL).
    auto& t = tls();
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    REQUIRE(build != nullptr);
    kernex::test::temp_dir in;
    std::ofstream(in.path() / "message.md") << "```sh\necho started\nsleep 300\n```\n";
    auto client = t.client();
    const auto left = kernex::test::kill9_mid_run(
        client,
        {(fs::path(build) / "src" / "cli" / "kernex").string(), "exec", "--executor", "docker", "--image",
         kernex::test::busybox_image, "--tls-ca", (t.certs / "ca.pem").string(), "--tls-cert",
         (t.certs / "client.pem").string(), "--tls-key", (t.certs / "client-key.pem").string(),
         (in.path() / "message.md").string()},
        t.host, "started\n", 5s);
    REQUIRE_MESSAGE(left.found, left.output);
    REQUIRE(left.dirs.size() == 1);  // files: copy over tcp, the temporary work dir named in a label
    CHECK_FALSE(left.container_left);
    CHECK_MESSAGE(left.dirs_left.empty(), left.dirs_left[0]);
}

TEST_CASE("TLS: without kernex-reaper the result says that only the next start's sweep removes a killed kernex's container") {
    auto& t = tls();
    docker_executor_options o = busybox();
    o.docker_host = t.host;
    o.tls = t.tls();
    const char* saved = std::getenv("KERNEX_LIBEXEC_DIR");
    const std::string before = saved ? saved : "";
    kernex::test::temp_dir empty;
    ::setenv("KERNEX_LIBEXEC_DIR", empty.path().c_str(), 1);
    std::optional<docker_executor> ex;
    ex.emplace(o);
    if (saved) ::setenv("KERNEX_LIBEXEC_DIR", before.c_str(), 1);
    else ::unsetenv("KERNEX_LIBEXEC_DIR");
    const auto r = run(*ex, "sh", "echo here");
    CHECK(r.output == "here\n");
    bool said = false;
    for (const auto& n : r.notes) said = said || n.find("kernex-reaper is not in " + empty.path().string()) == 0;
    CHECK_MESSAGE(said, r.notes.size());
    ex.reset();
    CHECK(t.client().call("GET", "/containers/json?all=1").empty());
}

TEST_CASE("TLS failures: each says what is wrong, within the deadline") {
    auto& t = tls();
    scoped_env no_verify("DOCKER_TLS_VERIFY", nullptr);
    scoped_env no_path("DOCKER_CERT_PATH", nullptr);
    docker_executor_options o = busybox();
    o.docker_host = t.host;
    o.request_timeout = 5s;

    SUBCASE("a CA that did not sign the daemon's certificate") {
        o.tls = t.tls();
        o.tls.ca = t.certs / "other-ca.pem";
        const auto m = tls_failure(o);
        CHECK(has(m, "the server's certificate did not verify"));
        CHECK(has(m, "other-ca.pem"));
    }
    SUBCASE("an address the daemon's certificate does not name (127.0.0.2: the same daemon)") {
        o.tls = t.tls();
        o.docker_host = "tcp://127.0.0.2:" + std::to_string(t.port);
        const auto m = tls_failure(o);
        CHECK(has(m, "did not verify"));
        CHECK(has(m, "does not name this host"));
    }
    SUBCASE("a client certificate from another CA") {
        o.tls = t.tls();
        o.tls.cert = t.certs / "stranger.pem";
        o.tls.key = t.certs / "stranger-key.pem";
        CHECK(has(tls_failure(o), "refused the client certificate"));
    }
    SUBCASE("no client certificate (DOCKER_CERT_PATH with only ca.pem)") {
        scoped_env verify("DOCKER_TLS_VERIFY", "1");
        scoped_env path("DOCKER_CERT_PATH", (t.certs / "only-ca").c_str());
        o.tls = {};
        const auto m = tls_failure(o);
        CHECK(has(m, "requires a client certificate and none was sent"));
        CHECK(has(m, "no client certificate"));
    }
    SUBCASE("a client certificate file that does not exist") {
        o.tls = t.tls();
        o.tls.cert = t.certs / "missing.pem";
        const auto m = tls_failure(o, kernex::errc::not_found);
        CHECK(has(m, "missing.pem does not exist"));
    }
    SUBCASE("an expired client certificate") {
        o.tls = t.tls();
        o.tls.cert = t.certs / "expired.pem";
        o.tls.key = t.certs / "expired-key.pem";
        const auto m = tls_failure(o);
        CHECK(has(m, "expired on Jan  2 00:00:00 2020"));
    }
    SUBCASE("plain HTTP to the TLS port") {
        o.tls = {.verify = false};
        const auto m = tls_failure(o);
        CHECK(has(m, "speaks TLS on this port and kernex spoke plain HTTP"));
        CHECK(has(m, "DOCKER_TLS_VERIFY=1"));
    }
    SUBCASE("TLS to a plain port (the suite's daemon)") {
        if (over_tls()) {
            MESSAGE("the suite's daemon speaks TLS in this run: the run with files bind has this case");
            return;
        }
        o.docker_host = "tcp://127.0.0.1:" + std::to_string(suite().tcp_port);
        o.tls = t.tls();
        const auto m = tls_failure(o);
        CHECK(has(m, "TLS to the Docker daemon at " + o.docker_host + " failed"));
        CHECK(has(m, "TLS on this port"));
    }
    SUBCASE("TLS files with tls_verify off, TLS for a unix socket") {
        o.tls = t.tls();
        o.tls.verify = false;
        CHECK(has(tls_failure(o, kernex::errc::invalid_argument), "no TLS without verification"));
        o.docker_host = suite().daemon.host();
        o.tls.verify = true;
        CHECK(has(tls_failure(o, kernex::errc::invalid_argument), "is a unix socket"));
    }
}

TEST_CASE("plain tcp to a host that is not loopback warns; loopback and TLS do not (nothing is connected to)") {
    scoped_env no_verify("DOCKER_TLS_VERIFY", nullptr);
    // 192.0.2.0/24 is TEST-NET-1: never routed. The constructor connects to nothing.
    kernex::docker_client remote({.host = "tcp://192.0.2.10:2375"});
    CHECK(has(remote.warning(), "anyone on the network can take over the daemon"));
    CHECK(!remote.uses_tls());
    CHECK(kernex::docker_client({.host = "tcp://db.example.invalid:2375"}).warning().size() > 0);
    CHECK(kernex::docker_client({.host = "tcp://127.0.0.1:2375"}).warning().empty());
    CHECK(kernex::docker_client({.host = "tcp://localhost:2375"}).warning().empty());
    CHECK(kernex::docker_client({.host = "tcp://[::1]:2375"}).warning().empty());
    CHECK(kernex::docker_client({.host = "unix:///var/run/docker.sock"}).warning().empty());
    kernex::test::temp_dir certs;
    kernex::test::tls_certificates_in(certs.path());
    kernex::docker_client over_tls({.host = "tcp://192.0.2.10:2376",
                                    .tls = {.ca = certs.path() / "ca.pem",
                                            .cert = certs.path() / "client.pem",
                                            .key = certs.path() / "client-key.pem"}});
    CHECK(over_tls.uses_tls());
    CHECK(over_tls.warning().empty());
}

// ---- files "copy": the work dir and /workspace kept alike through the archive endpoint.

TEST_CASE("files copy: the work dir goes in, code files and what the blocks write come back, restart keeps them") {
    kernex::test::temp_dir work;
    kernex::test::write_file(work / "input.txt", "given\n");
    fs::create_directories(work.path() / "data");
    kernex::test::write_file(work / "data/n.csv", "1,2\n");
    docker_executor_options o = busybox();
    o.files = "copy";
    o.work_dir = work.path();
    docker_executor ex(o);
    CHECK(ex.files_mode() == "copy");
    auto r = run(ex, "sh", "# filename: scripts/go.sh\ncat input.txt data/n.csv; echo made > out.txt; mkdir -p d/e && echo x > d/e/f; pwd");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "given\n1,2\n/workspace\n");
    REQUIRE(r.notes.size() == 1);
    CHECK(r.notes[0].starts_with("files: copy"));
    REQUIRE(r.code_files.size() == 1);
    CHECK(r.code_files[0] == fs::canonical(work.path() / "scripts" / "go.sh"));
    CHECK(kernex::test::read_file(work / "out.txt") == "made\n");
    CHECK(kernex::test::read_file(work / "d/e/f") == "x\n");
    struct stat st {};
    REQUIRE(::stat((work.path() / "out.txt").c_str(), &st) == 0);
    CHECK(st.st_uid == ::getuid());
    CHECK((st.st_mode & 07777) == 0600);
    // A block changes a file: the new bytes come back.
    CHECK(run(ex, "sh", "echo changed > out.txt").exit_code == 0);
    CHECK(kernex::test::read_file(work / "out.txt") == "changed\n");
    // Its tmpfs goes with a restart; the work dir goes in again.
    ex.restart();
    r = run(ex, "sh", "cat out.txt d/e/f input.txt");
    CHECK(r.output == "changed\nx\ngiven\n");
}

TEST_CASE("files copy: links, FIFOs and names through a symlink are refused and said, never followed; a cap") {
    kernex::test::temp_dir work, outside;
    // The user's own symlink in the work dir: a block's dir of that name must not write through it.
    fs::create_directory_symlink(outside.path(), work.path() / "elsewhere");
    docker_executor_options o = busybox();
    o.files = "copy";
    o.work_dir = work.path();
    o.max_copy_back = 4096;
    docker_executor ex(o);
    auto r = run(ex, "sh",
                 "echo secret > real; ln -s /etc/passwd leak; ln real hard; mkfifo fifo; "
                 "mkdir elsewhere && echo pwned > elsewhere/x; echo done");
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("done\n") == 0);
    CHECK(r.output.find("not copied back from the container: leak: a symbolic link") != std::string::npos);
    CHECK(r.output.find("not copied back from the container: fifo: a FIFO") != std::string::npos);
    CHECK(r.output.find("not copied back from the container: elsewhere/x") != std::string::npos);
    CHECK(fs::is_symlink(work.path() / "elsewhere"));
    CHECK(fs::is_empty(outside.path()));
    CHECK_FALSE(fs::exists(fs::symlink_status(work.path() / "leak")));
    CHECK_FALSE(fs::exists(fs::symlink_status(work.path() / "fifo")));
    // Two names of one inode (the tar carries the second as a link) come back as two files.
    CHECK(kernex::test::read_file(work / "real") == "secret\n");
    CHECK(kernex::test::read_file(work / "hard") == "secret\n");
    CHECK_FALSE(fs::equivalent(work.path() / "real", work.path() / "hard"));

    // The cap: what is past max_copy_back stays in the container, and is said.
    r = run(ex, "sh", "head -c 10000 /dev/zero > big; echo small > small");
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("10000 bytes of files the blocks wrote were not copied back (max_copy_back is 4096)") !=
          std::string::npos);
    CHECK_FALSE(fs::exists(work.path() / "big"));
    CHECK(kernex::test::read_file(work / "small") == "small\n");
}

TEST_CASE("files copy with the resident runner: code in and files back on the runner's stream, no request per block") {
    auto& d = suite();
    kernex::test::temp_dir work;
    kernex::test::write_file(work / "input.txt", "given\n");
    docker_executor_options o = busybox();
    o.files = "copy";
    o.work_dir = work.path();
    docker_executor ex(o);
    auto r = run(ex, "sh", "cat input.txt; echo made > out.txt");
    REQUIRE_MESSAGE(through_runner(r), r.notes[0]);
    CHECK(r.output == "given\n");
    CHECK(kernex::test::read_file(work / "out.txt") == "made\n");
    // From now on: neither an exec nor an archive request, in or out, per block.
    const std::string id = ex.container_id();
    const auto puts = event_count(d.client, id, "extract-to-dir");
    const auto gets = event_count(d.client, id, "archive-path");
    r = ex.execute({{"sh", "# filename: d/e/two.sh\necho two > two.txt; cat out.txt"}, {"sh", "echo three >> two.txt"}});
    CHECK(r.exit_code == 0);
    CHECK(r.output == "made\n");
    CHECK(kernex::test::read_file(work / "two.txt") == "two\nthree\n");
    CHECK(fs::is_regular_file(work.path() / "d" / "e" / "two.sh"));
    // A name over a tar header's 100 bytes comes back whole (a PAX record),
    // an empty file and an executable one too.
    const std::string a(60, 'a'), b(60, 'b'), c(40, 'c');
    r = run(ex, "sh", "mkdir -p " + a + "/" + b + " && echo long > " + a + "/" + b + "/" + c + "; : > empty; " +
                          "printf '#!/bin/sh\\n' > tool; chmod 755 tool");
    CHECK(r.exit_code == 0);
    CHECK(kernex::test::read_file(work.path() / a / b / c) == "long\n");
    CHECK(fs::is_regular_file(work.path() / "empty"));
    CHECK(fs::file_size(work.path() / "empty") == 0);
    CHECK((fs::status(work.path() / "tool").permissions() & fs::perms::owner_exec) != fs::perms::none);
    CHECK(event_count(d.client, id, "extract-to-dir") == puts);
    CHECK(event_count(d.client, id, "archive-path") == gets);
    CHECK(exec_count(d.client, id) == 0);

    // What a block planted at the next block's names is never written
    // through: a FIFO (no hang), a hard link to a file the blocks keep, a
    // symlinked dir on the way (refused, said), a directory (refused, said).
    r = run(ex, "sh",
            "mkfifo fifo.sh; echo keep > keep; ln keep link.sh; mkdir -p /tmp/away; ln -s /tmp/away sub; "
            "mkdir dir.sh; echo planted");
    CHECK(r.output.starts_with("planted\n"));
    r = run(ex, "sh", "# filename: fifo.sh\necho through the fifo");
    CHECK(r.exit_code == 0);
    CHECK(r.output.starts_with("through the fifo\n"));
    r = run(ex, "sh", "# filename: link.sh\necho through the link");
    CHECK(r.output.starts_with("through the link\n"));
    r = run(ex, "sh", "cat keep; ls /tmp/away | wc -l");
    CHECK(r.output.starts_with("keep\n0\n"));
    // (Each block's copy back says that the symlink sub is not copied back.)
    // On the host sub is no symlink (it was not copied back): the host makes
    // sub/x.sh, the runner refuses to make it through the container's link.
    r = run(ex, "sh", "# filename: sub/x.sh\necho ran");
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(r.output.find("could not be made in the container: a symlink or not a directory on the way: sub") !=
                      std::string::npos,
                  r.output);
    r = run(ex, "sh", "# filename: dir.sh\necho ran");
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(r.output.find("could not be made in the container: a directory stands at dir.sh") != std::string::npos,
                  r.output);
    r = run(ex, "sh", "ls /tmp/away | wc -l; cat keep");
    CHECK(r.output.starts_with("0\nkeep\n"));
    CHECK(ex.container_id() == id);
    CHECK(event_count(d.client, id, "extract-to-dir") == puts);
    CHECK(event_count(d.client, id, "archive-path") == gets);

    // Without the runner the same blocks take the archive endpoint, both ways, every block.
    docker_executor_options per_exec = o;
    per_exec.resident_runner = false;
    docker_executor execs(per_exec);
    const std::string exec_id = execs.container_id();
    const auto exec_puts = event_count(d.client, exec_id, "extract-to-dir");
    const auto exec_gets = event_count(d.client, exec_id, "archive-path");
    r = run(execs, "sh", "echo four > four.txt");
    CHECK_FALSE(through_runner(r));
    CHECK(kernex::test::read_file(work / "four.txt") == "four\n");
    CHECK(event_count(d.client, exec_id, "extract-to-dir") > exec_puts);
    CHECK(event_count(d.client, exec_id, "archive-path") > exec_gets);
}

TEST_CASE("files: bind for a unix socket by default; a bad value is refused; the config key and kernex exec --files") {
    docker_executor_options o = busybox();
    o.docker_host = suite().daemon.host();
    o.tls = {};
    o.files.clear();
    {
        docker_executor ex(o);
        CHECK(ex.files_mode() == "bind");
        const auto r = run(ex, "sh", "true");
        REQUIRE(r.notes.size() == 1);
        CHECK(r.notes[0].starts_with("files: bind"));
    }
    o.files = "rsync";
    CHECK_THROWS_WITH_AS(docker_executor{o}, doctest::Contains("files must be \"bind\" or \"copy\""), kernex::error);
    auto ex = kernex::make_executor({{"executor", "docker"},
                                     {"image", kernex::test::busybox_image},
                                     {"docker_host", suite().daemon.host()},
                                     {"files", "copy"},
                                     {"max_copy_back", "1M"}});
    const auto r = ex->execute({{"sh", "echo via config > f"}});
    CHECK(r.exit_code == 0);
    CHECK(r.to_json()["notes"][0].get<std::string>().starts_with("files: copy"));
}

namespace {

// busybox with a file where the resident runner's tmpfs goes (/.kernex): its
// container cannot start with the runner, an exec per block still runs.
constexpr const char* no_runner_image = "kernex-test/busybox-no-runner:latest";

void ensure_no_runner_image(kernex::docker_client& client) {
    if (kernex::test::image_present(client, no_runner_image)) return;
    kernex::docker::container_config config;
    config.image = kernex::test::busybox_image;
    config.name = "kernex-test-make-no-runner";
    config.cmd = {"true"};
    config.network_mode = "none";
    config.confinement.read_only = false;  // the archive endpoint writes to the root
    const std::string id = kernex::docker::create_container(client, config);
    client.put_archive(id, "/", kernex::docker::make_tar({{".kernex", false, 0644, 0, 0, "not a dir\n"}}));
    client.call("POST", "/commit?container=" + id + "&repo=kernex-test/busybox-no-runner&tag=latest");
    kernex::docker::remove_container(client, id);
}

}  // namespace

TEST_CASE("the resident runner: pid 1 of the container runs every block, no Engine API exec; the notes say which path ran") {
    auto& d = suite();
    docker_executor ex(busybox());
    auto r = run(ex, "sh", "echo one");
    CHECK(r.output == "one\n");
    // Over TLS too (docker_executor_copy): the attached stream is taken over on either connection.
    REQUIRE_MESSAGE(through_runner(r), r.notes[0]);
    // Seen from the host: the container's first process is the runner, as the blocks' user.
    const std::string init = std::to_string(init_pid(d.client, ex.container_id()));
    std::string first;
    const auto top = d.client.call("GET", "/containers/" + ex.container_id() + "/top?ps_args=-o%20pid,uid,args");
    for (const auto& p : top["Processes"])
        if (p[0].get<std::string>() == init) first = p[1].get<std::string>() + " " + p[2].get<std::string>();
    CHECK_MESSAGE(first == std::to_string(::getuid()) + " /.kernex/kernex-runner", "init " << init << ": " << top.dump());
    r = ex.execute({{"sh", "echo two"}, {"sh", "exit 4"}, {"sh", "echo never"}});
    CHECK(r.exit_code == 4);
    CHECK(r.output == "two\n");
    // The blocks cost the daemon no exec at all.
    CHECK(exec_count(d.client, ex.container_id()) == 0);

    // The blocks' environment is what an exec gets: the container's (PATH,
    // HOSTNAME, the image's), under the executor's.
    docker_executor_options per_exec = busybox();
    per_exec.resident_runner = false;
    per_exec.env = {{"KERNEX_TEST_VAR", "set"}};
    docker_executor execs(per_exec);
    docker_executor_options with_env = busybox();
    with_env.env = per_exec.env;
    docker_executor runner(with_env);
    const std::string env_of = "env | grep -v '^HOSTNAME=' | sort; test \"$HOSTNAME\" = \"$(hostname)\" && echo hostname-ok";
    const auto by_exec = run(execs, "sh", env_of);
    const auto by_runner = run(runner, "sh", env_of);
    CHECK(through_runner(by_runner));
    CHECK(by_exec.notes[0].find("; blocks: an Engine API exec each (resident_runner is false)") != std::string::npos);
    CHECK(exec_count(d.client, execs.container_id()) >= 1);
    CHECK(by_runner.output == by_exec.output);
    CHECK(by_runner.output.find("KERNEX_TEST_VAR=set\n") != std::string::npos);
    CHECK(by_runner.output.find("PATH=/") != std::string::npos);
    CHECK(by_runner.output.ends_with("hostname-ok\n"));

    // The container killed between blocks: the next block gets a fresh one, with a runner.
    const std::string old = ex.container_id();
    d.client.call("POST", "/containers/" + old + "/kill");
    // Between blocks means after it is dead: a block sent while the kill is
    // still on its way is a block the container died under (another test).
    d.client.call("POST", "/containers/" + old + "/wait?condition=not-running");
    r = run(ex, "sh", "echo back");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "back\n");
    CHECK(through_runner(r));
    CHECK(ex.container_id() != old);
    CHECK_FALSE(has_container(d.client, old));
}

TEST_CASE("the resident runner falls back to an exec per block when it cannot run in the image, and says why") {
    auto& d = suite();
    ensure_no_runner_image(d.client);
    docker_executor_options o = busybox(10s);
    o.image = no_runner_image;
    docker_executor ex(o);
    auto r = run(ex, "sh", "echo fell back; exit 3");
    CHECK(r.exit_code == 3);
    CHECK(r.output == "fell back\n");
    CHECK_FALSE(through_runner(r));
    CHECK_MESSAGE(r.notes[0].find("; blocks: an Engine API exec each (the resident runner could not run in the image: ") !=
                      std::string::npos,
                  r.notes[0]);
    CHECK(exec_count(d.client, ex.container_id()) >= 1);
    // The exec path's guarantees hold there: a timeout leaves nothing.
    r = run(ex, "sh", "setsid sleep 1040 > /dev/null 2>&1 & sleep 1041");
    CHECK(r.timed_out);
    const auto left = block_processes(d.client, ex.container_id());
    CHECK_MESSAGE(left.empty(), joined_lines(left));
    // Only the one container is left of the attempt.
    CHECK(container_ids(d.client) == std::vector<std::string>{ex.container_id()});

    // Blocks that could trace the runner (it runs as their user) do not get one.
    docker_executor_options tracing = busybox();
    tracing.cap_add = {"cap_sys_ptrace"};
    docker_executor traced(tracing);
    r = run(traced, "sh", "echo traced");
    CHECK(r.output == "traced\n");
    CHECK_FALSE(through_runner(r));
    CHECK(r.notes[0].find("(with SYS_PTRACE the blocks could take over the resident runner)") != std::string::npos);
}

TEST_CASE("a hostile block cannot kill, stop, reach or impersonate the resident runner") {
    // The runner is pid 1 (the namespace's init: no signal from inside it
    // reaches it but those it handles, SIGKILL and SIGSTOP included), not
    // dumpable (its /proc/1/fd, environ and mem are closed to the blocks,
    // though they run as its user), and the blocks' output reaches kernex
    // only framed by it: a block printing frames prints text.
    auto& d = suite();
    docker_executor ex(busybox(20s));
    const std::string id = ex.container_id();
    const long runner = init_pid(d.client, id);
    auto r = run(ex, "sh",
                 "{ kill -KILL 1; kill -STOP 1; kill -TERM 1; kill -INT 1; kill -KILL -1; } 2> /dev/null\n"
                 "for fd in 0 1 2 3 10 11 12; do (printf 'O\\000\\000\\000\\004evil' > /proc/1/fd/$fd) 2>/dev/null && echo wrote-fd-$fd; done\n"
                 "cat /proc/1/environ > /dev/null 2>&1 && echo read-environ\n"
                 "dd if=/proc/1/mem of=/dev/null bs=1 count=1 skip=4194304 2>/dev/null && echo read-mem\n"
                 // A forged exit frame (exited 0, cleaned) and a forged hello, on the block's stdout.
                 "printf 'X\\000\\000\\000\\006\\000\\000\\000\\000\\000\\001'\n"
                 "printf 'H\\000\\000\\000\\017kernex-runner/1'\n"
                 "sleep 1050 &\n"
                 "exit 7\n");
    REQUIRE(through_runner(r));
    CHECK(r.exit_code == 7);
    for (const char* got : {"wrote-fd", "read-environ", "read-mem"})
        CHECK_MESSAGE(r.output.find(got) == std::string::npos, r.output);
    const std::string forged = std::string("X\0\0\0\6\0\0\0\0\0\1", 11) + std::string("H\0\0\0\17kernex-runner/1", 20);
    CHECK(r.output == forged);
    // The same runner in the same container, untouched, and nothing of the block's left.
    CHECK(ex.container_id() == id);
    CHECK(init_pid(d.client, id) == runner);
    const auto left = block_processes(d.client, id);
    CHECK_MESSAGE(left.empty(), joined_lines(left));
    r = run(ex, "sh", "echo alive");
    CHECK(r.exit_code == 0);
    CHECK(r.output == "alive\n");
    CHECK(ex.container_id() == id);
    CHECK(init_pid(d.client, id) == runner);
}
