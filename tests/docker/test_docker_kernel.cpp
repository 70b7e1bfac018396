// Stateful kernels in Docker containers (kernel_options::docker): Debian's
// ipykernel in an image made locally (debootstrap, then apt in a chroot;
// cached in the build dir), on the suite's own dockerd. What a user sees:
// state across cells, the work dir shared and nothing else, no network,
// interrupts, timeouts, restarts, death, and nothing left behind.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <future>
#include <thread>

#include "../mcp/session_backend.hpp"
#include "docker_test_support.hpp"
#include "kernex/error.hpp"
#include "kernex/executor.hpp"
#include "kernex/kernel_manager.hpp"
#include "kernex/process.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using namespace kernex;
using steady = std::chrono::steady_clock;

namespace {

struct kernel_daemon {
    unsigned short tcp_port = test::free_tcp_port();
    test::test_dockerd daemon{tcp_port};
    docker_client client = daemon.client();
    kernel_daemon() { test::ensure_ipykernel_image(client); }
};

kernel_daemon& suite() { return test::suite_once<kernel_daemon>("the suite's dockerd with the ipykernel image"); }

// $JUPYTER_RUNTIME_DIR of its own per test: the private dirs made there are easy to count.
struct own_runtime_dir {
    test::temp_dir dir;
    own_runtime_dir() { ::setenv("JUPYTER_RUNTIME_DIR", dir.path().c_str(), 1); }
    ~own_runtime_dir() { ::unsetenv("JUPYTER_RUNTIME_DIR"); }
    std::size_t entries() const {
        return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator{}));
    }
};

kernel_options in_docker(std::optional<fs::path> work_dir = {}) {
    kernel_options o;
    o.kernel_name = "python3";
    o.env = {{"PYDEVD_DISABLE_FILE_VALIDATION", "1"}};
    o.docker.emplace();
    o.docker->image = test::ipykernel_image;
    o.docker->docker_host = suite().daemon.host();
    o.docker->work_dir = std::move(work_dir);
    return o;
}

std::string text_of(const execution& r) {
    std::string out;
    for (const auto& o : r.outputs) {
        if (auto* s = std::get_if<outputs::stream>(&o)) out += s->text;
        if (auto* e = std::get_if<outputs::execute_result>(&o)) out += e->data.value("text/plain", "") + "\n";
        if (auto* e = std::get_if<outputs::error>(&o)) out += e->ename + ": " + e->evalue + "\n";
    }
    return out;
}

// The containers (running or not) the daemon has for kernel `id`, else all.
nlohmann::json containers(const std::string& kernel_id = {}) {
    std::string path = "/containers/json?all=1";
    if (!kernel_id.empty()) {
        const nlohmann::json filters = {{"label", {"org.kernex.kernel=" + kernel_id}}};
        path += "&filters=" + filters.dump();
    }
    auto& client = suite().client;
    return client.call("GET", path);
}

std::string container_of(const kernel_manager& km) {
    const auto list = containers(km.id());
    REQUIRE(list.size() == 1);
    return list[0]["Id"].get<std::string>();
}

// Runs cmd in the container as root, as `docker exec` would.
std::string exec_in(const std::string& container, std::vector<std::string> cmd) {
    auto client = suite().daemon.client();
    const auto id = client.create_exec(container, {.cmd = std::move(cmd), .env = {}, .working_dir = "/", .user = "0:0"});
    std::string out;
    client.start_exec(id, {.deadline = steady::now() + 30s,
                           .on_output = [&](docker_stream, std::string_view data) { out.append(data); },
                           .cancel_fd = -1});
    return out;
}

// Everything a kernel in a container made on the host and in the daemon.
struct footprint {
    std::string kernel_id;
    fs::path connection_file;
    fs::path private_dir;
    std::vector<fs::path> sockets;
};

footprint footprint_of(const kernel_manager& km) {
    footprint f{km.id(), km.connection_file(), km.connection_file().parent_path(), {}};
    const auto& c = km.connection();
    if (c.transport == "ipc")
        for (auto port : {c.shell_port, c.iopub_port, c.stdin_port, c.control_port, c.hb_port})
            f.sockets.push_back(c.ip + "-" + std::to_string(port));
    return f;
}

void check_nothing_left(const footprint& f) {
    CHECK(containers(f.kernel_id).empty());
    CHECK_FALSE(fs::exists(f.connection_file));
    CHECK_FALSE(fs::exists(f.private_dir));
    for (const auto& s : f.sockets) CHECK_FALSE(fs::exists(s));
}

// The kernex CLI run to its end (2 minutes at most) on the suite's daemon, stdout only.
run_result run_cli(std::vector<std::string> argv) {
    spawn_options spawn;
    spawn.argv = std::move(argv);
    spawn.env["DOCKER_HOST"] = suite().daemon.host();
    spawn.merge_stderr = false;
    run_options limits;
    limits.timeout = 120s;
    return run_process(spawn, limits);
}

// The error kernel_manager::start throws for o (a test failure when it starts).
error start_error(const kernel_options& o) {
    try {
        kernel_manager::start(o);
    } catch (const error& e) {
        return e;
    }
    FAIL("the kernel started");
    return error(errc::invalid_argument, "");
}

}  // namespace

TEST_CASE("a kernel in a container: state across cells, the work dir shared, no network, ipc only") {
    own_runtime_dir runtime;
    test::temp_dir work;
    auto o = in_docker(work.path());
    o.docker->memory = 512ull << 20;
    o.docker->cpus = 1.5;
    o.docker->pids_limit = 256;
    auto km = kernel_manager::start(o);
    auto& kc = km.client();
    const footprint f = footprint_of(km);

    CHECK(kc.execute("x = 41").status == execution_status::ok);
    auto r = kc.execute("x + 1");
    CHECK(r.status == execution_status::ok);
    CHECK(r.result_text() == "42");

    // The work dir, and only it, is the container's /workspace.
    r = kc.execute("import os\nopen('/workspace/from_kernel.txt', 'w').write('written inside')\nprint(os.getcwd())");
    CHECK(text_of(r) == "/workspace\n");
    CHECK(test::read_file(work.path() / "from_kernel.txt") == "written inside");
    struct stat st {};
    REQUIRE(::stat((work.path() / "from_kernel.txt").c_str(), &st) == 0);
    CHECK(st.st_uid == ::getuid());
    r = kc.execute("print(os.path.exists('" + work.path().string() + "'))");
    CHECK(text_of(r) == "False\n");

    // No network: only the loopback interface, and no route out.
    r = kc.execute("import socket\nprint(sorted(n for _, n in socket.if_nameindex()))");
    CHECK(text_of(r) == "['lo']\n");
    r = kc.execute("socket.create_connection(('192.0.2.1', 80), timeout=2)");
    CHECK(r.status == execution_status::error);
    CHECK(text_of(r).find("OSError") != std::string::npos);

    // ipc sockets in a private dir: no tcp port anywhere.
    CHECK(km.connection().transport == "ipc");
    CHECK(f.private_dir.parent_path() == runtime.dir.path());
    CHECK((fs::status(f.private_dir).permissions() & fs::perms::all) == fs::perms::owner_all);
    for (const auto& s : f.sockets) CHECK(fs::is_socket(s));
    const auto info = read_connection_file(km.connection_file());
    CHECK(info.transport == "ipc");
    CHECK(info.ip == km.connection().ip);

    // The container as asked: an init, no network, the limits, a generated name.
    const auto inspect = suite().client.call("GET", "/containers/" + container_of(km) + "/json");
    const auto& host = inspect["HostConfig"];
    CHECK(host["Init"] == true);
    CHECK(host["NetworkMode"] == "none");
    CHECK(host["Memory"] == 512ull << 20);
    CHECK(host["NanoCpus"] == 1'500'000'000);
    CHECK(host["PidsLimit"] == 256);
    CHECK(inspect["Name"].get<std::string>().starts_with("/kernex-kernel-"));
    CHECK(inspect["Config"]["User"] == std::to_string(::getuid()) + ":" + std::to_string(::getgid()));
    CHECK(km.pid() == inspect["State"]["Pid"].get<int>());

    km.shutdown();
    check_nothing_left(f);
    CHECK(runtime.entries() == 0);
    CHECK(fs::exists(work.path() / "from_kernel.txt"));  // a given work dir stays, with what the kernel wrote
}

TEST_CASE("a kernel in a container: interrupt of a long cell, then the session goes on") {
    own_runtime_dir runtime;
    auto km = kernel_manager::start(in_docker());
    auto& kc = km.client();
    CHECK(kc.execute("y = 'kept'").status == execution_status::ok);
    auto interrupter = std::async(std::launch::async, [&] {
        std::this_thread::sleep_for(1500ms);
        km.interrupt();
    });
    const auto started = steady::now();
    // stop_on_error off: after an error ipykernel aborts the requests that
    // reach it before its abort ends, and on a loaded machine the next cell's
    // can (a race of ipykernel's, local kernels alike; not what this tests).
    execute_options eo;
    eo.stop_on_error = false;
    eo.timeout = 30s;
    auto r = kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(60)", eo);
    interrupter.get();
    CHECK(steady::now() - started < 15s);
    CHECK(r.status == execution_status::error);
    CHECK(text_of(r).find("sleeping") != std::string::npos);
    CHECK(text_of(r).find("KeyboardInterrupt") != std::string::npos);
    r = kc.execute("y");
    CHECK(r.result_text() == "'kept'");
}

TEST_CASE("a kernel in a container: a cell over its timeout is interrupted, the state stays") {
    own_runtime_dir runtime;
    auto km = kernel_manager::start(in_docker());
    auto& kc = km.client();
    CHECK(kc.execute("z = 7").status == execution_status::ok);
    const auto started = steady::now();
    execute_options eo;
    eo.stop_on_error = false;  // as in the interrupt test: no abort of the next cell
    eo.timeout = 2s;
    auto r = kc.execute("import time\ntime.sleep(60)", eo);
    CHECK(r.status == execution_status::timeout);
    CHECK(steady::now() - started < 20s);
    CHECK_FALSE(r.restarted);
    r = kc.execute("z * 6");
    CHECK_MESSAGE(r.result_text() == "42", to_string(r.status) << ": " << text_of(r) << r.note);
}

TEST_CASE("a kernel in a container: restart gives a fresh state in the same container") {
    own_runtime_dir runtime;
    auto o = in_docker();
    o.docker->read_only = false;  // so that a file outside the tmpfs /tmp can outlive the kernel
    auto km = kernel_manager::start(o);
    auto& kc = km.client();
    const std::string container = container_of(km);
    CHECK(kc.execute("state = 1\nopen('/var/tmp/in-container', 'w').write('x')").status == execution_status::ok);
    const int before = km.pid();
    km.restart();
    CHECK(km.pid() != before);
    auto r = kc.execute("state");
    CHECK(r.status == execution_status::error);
    CHECK(text_of(r).find("NameError") != std::string::npos);
    // The container was kept: its own filesystem still has the file.
    CHECK(container_of(km) == container);
    CHECK(kc.execute("import os\nos.path.exists('/var/tmp/in-container')").result_text() == "True");
    const footprint f = footprint_of(km);
    km.shutdown();
    check_nothing_left(f);
}

TEST_CASE("a kernel in a container is confined by default: no caps, no-new-privileges, read-only root, no device node") {
    own_runtime_dir runtime;
    test::temp_dir work;
    auto km = kernel_manager::start(in_docker(work.path()));
    auto& kc = km.client();
    const auto host = suite().client.call("GET", "/containers/" + container_of(km) + "/json")["HostConfig"];
    CHECK(host["CapDrop"] == nlohmann::json{"ALL"});
    CHECK(host["SecurityOpt"] == nlohmann::json{"no-new-privileges"});
    CHECK(host["ReadonlyRootfs"] == true);
    CHECK(host["Memory"] == 1ull << 30);
    CHECK(host["PidsLimit"] == 256);
    auto r = kc.execute("print(''.join(l for l in open('/proc/self/status') if l.split(':')[0] in ('CapEff', 'CapBnd', 'NoNewPrivs')))");
    CHECK(text_of(r) == "CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nNoNewPrivs:\t1\n\n");
    r = kc.execute("import os\ntry:\n    open('/usr/evil', 'w')\nexcept OSError as e:\n    print(e.errno)\nprint(os.environ['HOME'])");
    CHECK(text_of(r) == "30\n/tmp\n");  // EROFS
    r = kc.execute("import stat\ntry:\n    os.mknod('/workspace/mem', stat.S_IFCHR | 0o666, os.makedev(1, 1))\nexcept OSError as e:\n    print(e.errno)");
    CHECK(text_of(r) == "1\n");  // EPERM
    CHECK_FALSE(fs::exists(work.path() / "mem"));
    r = kc.execute("try:\n    os.chown('/workspace', 4242, 4242)\nexcept OSError as e:\n    print(e.errno)");
    CHECK(text_of(r) == "1\n");
    const footprint f = footprint_of(km);
    km.shutdown();
    check_nothing_left(f);
}

TEST_CASE("kernex run --docker-image with the container flags, and kill -9 of kernex kernel start leaves nothing") {
    own_runtime_dir runtime;
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    REQUIRE(build != nullptr);
    const std::string kernex = (fs::path(build) / "src" / "cli" / "kernex").string();
    test::temp_dir work;
    test::write_file(work / "cells.py",
                     "import os\n"
                     "def first(*paths):\n"
                     "    for p in paths:\n"
                     "        if os.path.exists(p):\n"
                     "            return open(p).read().strip()\n"
                     "print(first('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'),\n"
                     "      first('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'))\n"
                     "print(os.getuid(), os.access('/usr', os.W_OK))\n"
                     "open('suid', 'w').write('#!/bin/sh\\nid -u\\n')\n"
                     "os.chmod('suid', 0o6755)\n"
                     "print(oct(os.stat('suid').st_mode & 0o7777))\n");
    auto r = run_cli({kernex, "run", "--docker-image", test::ipykernel_image, "--work-dir", work.path().string(),
                      "--pids-limit", "100", "--memory", "768m", "--no-read-only", "--user", "0:0",
                      (work.path() / "cells.py").string()});
    CHECK(r.exit_code == 0);
    CHECK(r.output == "100 " + std::to_string(768ull << 20) + "\n0 True\n0o6755\n");
    // A setuid-root file the kernel made in the work dir, which another user of
    // the host could run: its bits cleared once the kernel is gone.
    struct stat st {};
    REQUIRE(::stat((work.path() / "suid").c_str(), &st) == 0);
    CHECK(st.st_uid == 0);
    CHECK((st.st_mode & 07777) == 0755);

    const auto left = test::kill9_mid_run(suite().client, {kernex, "kernel", "start", "--docker-image", test::ipykernel_image},
                                          suite().daemon.host(), "is running", 5s);
    REQUIRE_MESSAGE(left.found, left.output);
    CHECK(left.dirs.size() == 2);  // the temporary work dir and the private dir
    // As root: the mount point of the work dir's nosuid bind, unmounted and removed by the reaper.
    CHECK(left.mount_points.size() == (::geteuid() == 0 ? 1u : 0u));
    CHECK_FALSE(left.mount_left);
    CHECK_FALSE(left.container_left);
    for (const auto& d : left.dirs_left) CHECK_MESSAGE(false, d << " is left");
    CHECK(containers().empty());
    CHECK(runtime.entries() == 0);
}

TEST_CASE("a kernel killed inside its container: kernel_died, then the restarter brings it back") {
    own_runtime_dir runtime;
    auto km = kernel_manager::start(in_docker());
    auto& kc = km.client();
    std::atomic<int> restarted{0};
    km.on_restarted([&] { ++restarted; });
    const std::string container = container_of(km);
    auto r = kc.execute("import os\nos.getpid()");
    const std::string kernel_pid = r.result_text().value_or("");
    REQUIRE_FALSE(kernel_pid.empty());
    CHECK(kc.execute("lost = True").status == execution_status::ok);
    CHECK(kc.execute("open('/workspace/kept', 'w').write('before')").status == execution_status::ok);

    auto killer = std::async(std::launch::async, [&] {
        std::this_thread::sleep_for(1500ms);
        return exec_in(container, {"sh", "-c", "kill -9 " + kernel_pid});
    });
    const auto started = steady::now();
    r = kc.execute("import time\ntime.sleep(60)", {.timeout = 40s});
    killer.get();
    CHECK(r.status == execution_status::kernel_died);
    CHECK(steady::now() - started < 15s);

    // The container ended with its kernel and was started again.
    r = kc.execute("'lost' in globals()", {.timeout = 60s});
    CHECK(r.status == execution_status::ok);
    CHECK(r.result_text() == "False");
    CHECK(restarted.load() == 1);
    CHECK(km.restart_count() == 1);
    CHECK(container_of(km) == container);
    // The same work dir after the restart, and (as root) nosuid,nodev again:
    // kernex mounts it for every start of the container.
    CHECK(kc.execute("open('/workspace/kept').read()").result_text() == "'before'");
    std::string point;
    if (::geteuid() == 0) {
        r = kc.execute("[sorted(set(l.split()[3].split(',')) & {'nosuid', 'nodev'}) for l in open('/proc/mounts') "
                       "if l.split()[1] == '/workspace']");
        CHECK(r.result_text() == "[['nodev', 'nosuid']]");
        point = test::work_dir_mount_point(suite().client, container);
        REQUIRE_FALSE(point.empty());
        CHECK(fs::is_directory(point));  // kept for a next start, empty and unmounted
        CHECK_FALSE(test::mounted_at(point));
    }
    const footprint f = footprint_of(km);
    km.shutdown();
    check_nothing_left(f);
    if (!point.empty()) CHECK_FALSE(fs::exists(point));
}

TEST_CASE("a kernel in a container on a tcp daemon: death is seen by inspecting, without a pidfd") {
    own_runtime_dir runtime;
    auto o = in_docker();
    o.docker->docker_host = "tcp://127.0.0.1:" + std::to_string(suite().tcp_port);
    o.autorestart = false;
    auto km = kernel_manager::start(o);
    std::atomic<bool> dead{false};
    km.on_dead([&] { dead = true; });
    auto& kc = km.client();
    CHECK(kc.execute("1 + 1").result_text() == "2");
    const auto started = steady::now();
    auto r = kc.execute("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", {.timeout = 30s});
    CHECK(r.status == execution_status::kernel_died);
    CHECK(steady::now() - started < 10s);
    const auto until = steady::now() + 10s;
    while (!dead && steady::now() < until) std::this_thread::sleep_for(20ms);
    CHECK(dead.load());
    CHECK_FALSE(km.alive());
    const footprint f = footprint_of(km);
    km.shutdown();
    check_nothing_left(f);
}

TEST_CASE("a kernel in a container with network host: tcp on 127.0.0.1") {
    own_runtime_dir runtime;
    auto o = in_docker();
    o.docker->network_mode = "host";
    auto km = kernel_manager::start(o);
    CHECK(km.connection().transport == "tcp");
    CHECK(km.connection().ip == "127.0.0.1");
    CHECK(read_connection_file(km.connection_file()).ip == "127.0.0.1");
    CHECK(km.client().execute("6 * 7").result_text() == "42");
    const footprint f = footprint_of(km);
    km.shutdown();
    check_nothing_left(f);
}

TEST_CASE("a kernel in a container: failures say what to do and leave nothing") {
    own_runtime_dir runtime;
    SUBCASE("the image is missing") {
        auto o = in_docker();
        o.docker->image = "kernex-test/no-such-image:1";
        const auto e = start_error(o);
        CHECK(e.code() == errc::not_found);
        CHECK(std::string(e.what()).find("does not pull images") != std::string::npos);
    }
    SUBCASE("the kernel exits before it is ready: its exit code and its output") {
        auto o = in_docker();
        kernelspec spec = find_kernelspec("python3");
        spec.argv = {"/usr/bin/python3", "-c", "import sys; print('no kernel here', flush=True); sys.exit(3)"};
        o.spec = spec;
        const auto e = start_error(o);
        CHECK(e.code() == errc::launch_failed);
        const std::string what = e.what();
        CHECK(what.find("exited with code 3") != std::string::npos);
        CHECK(what.find("no kernel here") != std::string::npos);
    }
    SUBCASE("the daemon cannot be reached") {
        auto o = in_docker();
        o.docker->docker_host = "unix:///nonexistent/docker.sock";
        const auto e = start_error(o);
        CHECK(e.code() == errc::docker_error);
        CHECK(std::string(e.what()).find("cannot reach the Docker daemon") != std::string::npos);
    }
    SUBCASE("a connection file of one's own") {
        auto o = in_docker();
        o.connection_file = runtime.dir.path() / "mine.json";
        CHECK(start_error(o).code() == errc::invalid_argument);
    }
    CHECK(containers().empty());
    CHECK(runtime.entries() == 0);
}

TEST_CASE("jupyter_executor with docker_image: blocks keep state; the temporary work dir goes at stop") {
    own_runtime_dir runtime;
    auto ex = make_executor({{"executor", "jupyter"},
                             {"docker_image", test::ipykernel_image},
                             {"docker_host", suite().daemon.host()},
                             {"docker_pids_limit", 128},
                             {"timeout", 60}});
    auto r = ex->execute(extract_code_blocks("```python\nn = 20\n```\n```python\nprint(n + 22)\n```\n"));
    CHECK(r.exit_code == 0);
    CHECK(r.output == "42\n");
    r = ex->execute(extract_code_blocks("```python\nimport os\nprint(os.getcwd(), n)\n```\n"));
    CHECK(r.output == "/workspace 20\n");
    ex->stop();
    CHECK(containers().empty());
    CHECK(runtime.entries() == 0);
    CHECK_THROWS_AS(make_executor({{"executor", "jupyter"}, {"docker_memory", "1g"}}), error);
}

TEST_CASE("kernex run --docker-image and kernex exec --executor jupyter --docker-image") {
    own_runtime_dir runtime;
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    REQUIRE(build != nullptr);
    const std::string kernex = (fs::path(build) / "src" / "cli" / "kernex").string();
    test::temp_dir work;
    test::write_file(work / "cells.py", "a = 40\n# %%\nprint(a + 2)\n_ = open('out.txt', 'w').write('cli')\n");
    auto r = run_cli({kernex, "run", "--docker-image", test::ipykernel_image, "--work-dir", work.path().string(),
                      (work.path() / "cells.py").string()});
    CHECK(r.exit_code == 0);
    CHECK(r.output == "42\n");
    CHECK(test::read_file(work / "out.txt") == "cli");

    test::write_file(work / "message.md", "```python\nimport socket\nprint(socket.gethostname() != '', 6 * 7)\n```\n");
    r = run_cli({kernex, "exec", "--executor", "jupyter", "--docker-image", test::ipykernel_image, "--json",
                 (work.path() / "message.md").string()});
    CHECK(r.exit_code == 0);
    const auto result = nlohmann::json::parse(r.output, nullptr, false);
    REQUIRE_MESSAGE(result.is_object(), r.output);
    CHECK(result["output"] == "True 42\n");
    CHECK(containers().empty());
    CHECK(runtime.entries() == 0);
}

namespace {

// A --tlsverify dockerd (certificates made by openssl) with the ipykernel
// image, imported over TLS from the tarball the suite's daemon was fed.
struct tls_kernel_daemon : test::tls_dockerd {
    tls_kernel_daemon() {
        auto c = client(std::chrono::minutes(10));
        REQUIRE(c.uses_tls());
        test::ensure_ipykernel_image(c);
    }
};

tls_kernel_daemon& tls_suite() { return test::suite_once<tls_kernel_daemon>("the TLS dockerd with the ipykernel image"); }

}  // namespace

TEST_CASE("a kernel in a container on a --tlsverify daemon: cells, death seen by inspecting over TLS, nothing left") {
    own_runtime_dir runtime;
    auto& t = tls_suite();
    auto o = in_docker();
    o.docker->docker_host = t.host;
    o.docker->tls = t.tls();
    o.autorestart = false;
    auto km = kernel_manager::start(o);
    std::atomic<bool> dead{false};
    km.on_dead([&] { dead = true; });
    auto& kc = km.client();
    CHECK(kc.execute("x = 6 * 7").status == execution_status::ok);
    CHECK(kc.execute("x").result_text() == "42");
    auto r = kc.execute("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", {.timeout = 30s});
    CHECK(r.status == execution_status::kernel_died);
    const auto until = steady::now() + 10s;
    while (!dead && steady::now() < until) std::this_thread::sleep_for(20ms);
    CHECK(dead.load());
    const footprint f = footprint_of(km);
    km.shutdown();
    auto client = t.client();
    const nlohmann::json filters = {{"label", {"org.kernex.kernel=" + f.kernel_id}}};
    CHECK(client.call("GET", "/containers/json?all=1&filters=" + filters.dump()).empty());
    CHECK_FALSE(fs::exists(f.connection_file));
    CHECK_FALSE(fs::exists(f.private_dir));

    // The CLI: the certificates as flags, then as the docker CLI's variables.
    const char* build = std::getenv("KERNEX_BUILD_DIR");
    REQUIRE(build != nullptr);
    const std::string kernex = (fs::path(build) / "src" / "cli" / "kernex").string();
    test::temp_dir work;
    test::write_file(work / "cells.py", "a = 40\n# %%\nprint(a + 2)\n");
    const auto certs = t.certs;
    spawn_options spawn;
    spawn.argv = {kernex, "run", "--docker-image", test::ipykernel_image, "--docker-host", t.host,
                  "--tls-ca", (certs / "ca.pem").string(), "--tls-cert", (certs / "client.pem").string(),
                  "--tls-key", (certs / "client-key.pem").string(), (work.path() / "cells.py").string()};
    spawn.merge_stderr = false;
    run_options limits;
    limits.timeout = 120s;
    auto cli = run_process(spawn, limits);
    CHECK_MESSAGE(cli.exit_code == 0, cli.output);
    CHECK(cli.output == "42\n");

    test::temp_dir cert_path;
    fs::copy_file(certs / "ca.pem", cert_path / "ca.pem");
    fs::copy_file(certs / "client.pem", cert_path / "cert.pem");
    fs::copy_file(certs / "client-key.pem", cert_path / "key.pem");
    spawn.argv = {kernex, "run", "--docker-image", test::ipykernel_image, (work.path() / "cells.py").string()};
    spawn.env["DOCKER_HOST"] = t.host;
    spawn.env["DOCKER_TLS_VERIFY"] = "1";
    spawn.env["DOCKER_CERT_PATH"] = cert_path.path().string();
    cli = run_process(spawn, limits);
    CHECK_MESSAGE(cli.exit_code == 0, cli.output);
    CHECK(cli.output == "42\n");
    CHECK(client.call("GET", "/containers/json?all=1").empty());
    CHECK(runtime.entries() == 0);

    // kill -9 of kernex kernel start over TLS: its reaper (kernex-reaper,
    // which speaks TLS) removes the container and the dirs within 5 s.
    const auto left = test::kill9_mid_run(
        client,
        {kernex, "kernel", "start", "--docker-image", test::ipykernel_image, "--tls-ca", (certs / "ca.pem").string(),
         "--tls-cert", (certs / "client.pem").string(), "--tls-key", (certs / "client-key.pem").string()},
        t.host, "is running", 5s);
    REQUIRE_MESSAGE(left.found, left.output);
    CHECK(left.dirs.size() == 2);  // the temporary work dir and the private dir
    CHECK_FALSE(left.container_left);
    for (const auto& d : left.dirs_left) CHECK_MESSAGE(false, d << " is left");
    CHECK(client.call("GET", "/containers/json?all=1").empty());
    CHECK(runtime.entries() == 0);
}

TEST_CASE("kernex mcp --docker-image --executor docker: sessions and run_code in containers through the MCP SDK client; none left after") {
    auto& d = suite();
    // run_code's executor in the same image: python and bash.
    const nlohmann::json args = {"--docker-image", test::ipykernel_image, "--executor", "docker", "--image",
                                 test::ipykernel_image};
    const nlohmann::json probe = {{"code", "import os; print(os.path.exists('/.dockerenv'))"}, {"expect", "True"}};
    const auto r = test::run_mcp_session_backend({{"DOCKER_HOST", d.daemon.host()},
                                                  {"KERNEX_MCP_SESSION_ARGS", args.dump()},
                                                  {"KERNEX_MCP_PROBE", probe.dump()},
                                                  {"KERNEX_MCP_RUN_CODE", "1"}});
    MESSAGE(r.output);
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("fail 0") != std::string::npos);
    CHECK(r.output.find("run_code in the executor's container") != std::string::npos);
    // Every session's and run_code's container went with the server.
    CHECK(containers().empty());
}
