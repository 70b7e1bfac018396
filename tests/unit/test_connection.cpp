// Connection files, keys and port allocation, as a kernel launcher relies on them.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kernex/connection.hpp"
#include "kernex/error.hpp"

namespace fs = std::filesystem;
using kernex::connection_info;
using kernex::errc;

namespace {

// A fresh directory under the system temp dir, removed with everything in it.
struct scratch_dir {
    fs::path path;
    scratch_dir() {
        std::string tmpl = (fs::temp_directory_path() / "kernex-conn-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~scratch_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

struct scoped_umask {
    mode_t old;
    explicit scoped_umask(mode_t mask) : old(::umask(mask)) {}
    ~scoped_umask() { ::umask(old); }
};

struct scoped_env {
    std::string name;
    std::optional<std::string> old;
    scoped_env(std::string n, const char* value) : name(std::move(n)) {
        if (const char* v = std::getenv(name.c_str())) old = v;
        value ? ::setenv(name.c_str(), value, 1) : ::unsetenv(name.c_str());
    }
    ~scoped_env() { old ? ::setenv(name.c_str(), old->c_str(), 1) : ::unsetenv(name.c_str()); }
};

mode_t mode_of(const fs::path& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary) << text;
}

// jupyter_client's write_connection_file output, as Debian's 7.4.9 writes it.
const std::string jupyter_written = R"({
  "shell_port": 40001,
  "iopub_port": 40002,
  "stdin_port": 40003,
  "control_port": 40004,
  "hb_port": 40005,
  "ip": "127.0.0.1",
  "key": "a0b1c2d3-e4f5",
  "transport": "tcp",
  "signature_scheme": "hmac-sha256",
  "kernel_name": "python3"
})";

nlohmann::json good_json() { return nlohmann::json::parse(jupyter_written); }

// Throws from reading `j` as a connection file; returns the error.
kernex::error read_error(const scratch_dir& dir, const std::string& text) {
    const fs::path file = dir.path / "kernel-bad.json";
    write_text(file, text);
    try {
        kernex::read_connection_file(file);
    } catch (const kernex::error& e) {
        return e;
    }
    FAIL("no error for " << text);
    return kernex::error(errc::io_error, "unreachable");
}

void check_field_error(const scratch_dir& dir, const nlohmann::json& j, const std::string& field) {
    CAPTURE(j.dump());
    kernex::error e = read_error(dir, j.dump());
    CHECK(e.code() == errc::invalid_argument);
    const std::string what = e.what();
    CHECK(what.find((dir.path / "kernel-bad.json").string()) != std::string::npos);
    CHECK(what.find("\"" + field + "\"") != std::string::npos);
}

bool can_bind(const std::string& ip, std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = ip == "0.0.0.0" ? htonl(INADDR_ANY) : htonl(INADDR_LOOPBACK);
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

std::vector<std::uint16_t> ports_of(const connection_info& c) {
    return {c.shell_port, c.iopub_port, c.stdin_port, c.control_port, c.hb_port};
}

}  // namespace

TEST_CASE("a file jupyter_client wrote reads back field for field") {
    scratch_dir dir;
    write_text(dir.path / "kernel-1.json", jupyter_written);
    connection_info c = kernex::read_connection_file(dir.path / "kernel-1.json");
    CHECK(c.shell_port == 40001);
    CHECK(c.iopub_port == 40002);
    CHECK(c.stdin_port == 40003);
    CHECK(c.control_port == 40004);
    CHECK(c.hb_port == 40005);
    CHECK(c.ip == "127.0.0.1");
    CHECK(c.key == "a0b1c2d3-e4f5");
    CHECK(c.transport == "tcp");
    CHECK(c.signature_scheme == "hmac-sha256");
    CHECK(c.kernel_name == "python3");
    CHECK(c.shell_endpoint() == "tcp://127.0.0.1:40001");
    CHECK(c.hb_endpoint() == "tcp://127.0.0.1:40005");
}

TEST_CASE("write then read is a round trip, in jupyter_client's layout") {
    scratch_dir dir;
    connection_info c = kernex::allocate_ports({.kernel_name = "python3"});
    const fs::path file = dir.path / "kernel-rt.json";
    kernex::write_connection_file(file, c);
    connection_info back = kernex::read_connection_file(file);
    CHECK(back.to_json() == c.to_json());

    std::ifstream in(file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Same field order and indentation as jupyter_client's json.dumps(cfg, indent=2).
    std::regex layout(R"(\{\n  "shell_port": \d+,\n  "iopub_port": \d+,\n  "stdin_port": \d+,\n)"
                      R"(  "control_port": \d+,\n  "hb_port": \d+,\n  "ip": "127.0.0.1",\n  "key": "[0-9a-f]{64}",\n)"
                      R"(  "transport": "tcp",\n  "signature_scheme": "hmac-sha256",\n  "kernel_name": "python3"\n\})");
    CHECK(std::regex_match(text, layout));
}

TEST_CASE("connection files are 0600 whatever the umask, their new parents 0700") {
    scratch_dir dir;
    connection_info c = kernex::allocate_ports({});
    for (mode_t mask : {mode_t(0), mode_t(022), mode_t(0277)}) {
        CAPTURE(mask);
        scoped_umask umask(mask);
        const fs::path sub = dir.path / ("m" + std::to_string(mask));
        const fs::path file = sub / "a" / "b" / "kernel.json";
        kernex::write_connection_file(file, c);
        CHECK(mode_of(file) == 0600);
        CHECK(mode_of(sub) == 0700);
        CHECK(mode_of(sub / "a") == 0700);
        CHECK(mode_of(sub / "a" / "b") == 0700);
        CHECK(kernex::read_connection_file(file).key == c.key);
    }
    // An existing parent keeps its mode: it is not ours to change.
    ::chmod(dir.path.c_str(), 0755);
    kernex::write_connection_file(dir.path / "kernel.json", c);
    CHECK(mode_of(dir.path) == 0755);
}

TEST_CASE("rewriting replaces the file and leaves no temporary file behind") {
    scratch_dir dir;
    const fs::path file = dir.path / "kernel.json";
    connection_info a = kernex::allocate_ports({});
    connection_info b = kernex::allocate_ports({});
    kernex::write_connection_file(file, a);
    kernex::write_connection_file(file, b);
    CHECK(kernex::read_connection_file(file).key == b.key);
    CHECK(mode_of(file) == 0600);
    int entries = 0;
    for ([[maybe_unused]] auto& e : fs::directory_iterator(dir.path)) ++entries;
    CHECK(entries == 1);
}

TEST_CASE("writing what could not be read back is refused") {
    scratch_dir dir;
    connection_info c = kernex::allocate_ports({});
    c.hb_port = 0;
    CHECK_THROWS_WITH_AS(kernex::write_connection_file(dir.path / "k.json", c), doctest::Contains("\"hb_port\""),
                         kernex::error);
    CHECK_FALSE(fs::exists(dir.path / "k.json"));
}

TEST_CASE("a missing connection file is not_found, naming it") {
    scratch_dir dir;
    try {
        kernex::read_connection_file(dir.path / "nope.json");
        FAIL("no error");
    } catch (const kernex::error& e) {
        CHECK(e.code() == errc::not_found);
        CHECK(std::string(e.what()).find("nope.json") != std::string::npos);
    }
}

TEST_CASE("bad JSON is invalid_argument naming the file") {
    scratch_dir dir;
    for (std::string text : {"", "{", "{\"shell_port\": 1,}", "not json", "{\"shell_port\": 1e99999}"}) {
        CAPTURE(text);
        kernex::error e = read_error(dir, text);
        CHECK(e.code() == errc::invalid_argument);
        CHECK(std::string(e.what()).find("kernel-bad.json") != std::string::npos);
        CHECK(std::string(e.what()).find("not valid JSON") != std::string::npos);
    }
    kernex::error e = read_error(dir, "[1, 2]");
    CHECK(e.code() == errc::invalid_argument);
    CHECK(std::string(e.what()).find("kernel-bad.json") != std::string::npos);
}

TEST_CASE("every missing or bad field is an error naming the file and the field") {
    scratch_dir dir;
    for (std::string port : {"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"}) {
        CAPTURE(port);
        nlohmann::json j = good_json();
        j.erase(port);
        check_field_error(dir, j, port);
        for (nlohmann::json bad : {nlohmann::json("40001"), nlohmann::json(4000.5), nlohmann::json(40001.0),
                                   nlohmann::json(-1), nlohmann::json(0), nlohmann::json(65536),
                                   nlohmann::json(nullptr), nlohmann::json::array()}) {
            j = good_json();
            j[port] = bad;
            check_field_error(dir, j, port);
        }
    }
    for (std::string field : {"ip", "key", "transport"}) {
        nlohmann::json j = good_json();
        j.erase(field);
        check_field_error(dir, j, field);
        j[field] = 5;
        check_field_error(dir, j, field);
    }
    nlohmann::json j = good_json();
    j["ip"] = "";
    check_field_error(dir, j, "ip");
    j = good_json();
    j["transport"] = "udp";
    check_field_error(dir, j, "transport");
    for (std::string field : {"signature_scheme", "kernel_name"}) {
        j = good_json();
        j[field] = nlohmann::json::object();
        check_field_error(dir, j, field);
    }
}

TEST_CASE("from_json without a file names the source it is given") {
    nlohmann::json j = good_json();
    j.erase("key");
    CHECK_THROWS_WITH_AS(connection_info::from_json(j, "gateway reply"), doctest::Contains("gateway reply"),
                         kernex::error);
}

TEST_CASE("optional and unknown fields") {
    nlohmann::json j = good_json();
    j.erase("signature_scheme");
    j.erase("kernel_name");
    j["jupyter_session"] = "/tmp/x.ipynb";
    j["kernel_id"] = 7;
    j["transport"] = "TCP";
    j["key"] = "";
    connection_info c = connection_info::from_json(j);
    CHECK(c.signature_scheme == "hmac-sha256");
    CHECK(c.kernel_name.empty());
    CHECK(c.transport == "tcp");
    CHECK(c.key.empty());
}

TEST_CASE("endpoints for tcp, IPv6 and ipc") {
    connection_info c;
    c.shell_port = 5555;
    CHECK(c.shell_endpoint() == "tcp://127.0.0.1:5555");
    c.ip = "::1";
    CHECK(c.endpoint(6000) == "tcp://[::1]:6000");
    c.transport = "ipc";
    c.ip = "/run/user/1/kernel-ipc";
    c.iopub_port = 3;
    CHECK(c.iopub_endpoint() == "ipc:///run/user/1/kernel-ipc-3");
}

TEST_CASE("random_key is 64 lower-case hex characters and never repeats") {
    std::set<std::string> keys;
    const std::regex hex("[0-9a-f]{64}");
    for (int i = 0; i < 1000; ++i) {
        std::string k = kernex::random_key();
        CHECK(std::regex_match(k, hex));
        keys.insert(k);
    }
    CHECK(keys.size() == 1000);
}

TEST_CASE("allocate_ports gives a fresh key and five distinct, bindable tcp ports") {
    connection_info c = kernex::allocate_ports({.ip = "127.0.0.1", .key = "old"});
    CHECK(c.key.size() == 64);
    std::vector<std::uint16_t> ports = ports_of(c);
    CHECK(std::set<std::uint16_t>(ports.begin(), ports.end()).size() == 5);
    for (std::uint16_t p : ports) {
        CHECK(p != 0);
        CHECK(can_bind("127.0.0.1", p));
    }
    connection_info any = kernex::allocate_ports({.ip = "0.0.0.0"});
    for (std::uint16_t p : ports_of(any)) CHECK(can_bind("0.0.0.0", p));
}

TEST_CASE("tcp ports come from outside the ephemeral range, which outgoing connections draw from") {
    int low = 0, high = 0;
    std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low >> high;
    REQUIRE(low > 0);
    // A machine whose ephemeral range leaves no room falls back to bind()'s choice.
    if (low <= 10000 && high >= 65535) {
        MESSAGE("skipped: the ephemeral range " << low << "-" << high << " leaves no port outside it");
        return;
    }
    for (int i = 0; i < 50; ++i)
        for (std::uint16_t p : ports_of(kernex::allocate_ports({}))) {
            CAPTURE(p);
            CHECK((p < low || p > high));
            CHECK(p >= 10000);
        }
}

TEST_CASE("an ip that is not this host's is invalid_argument") {
    CHECK_THROWS_AS(kernex::allocate_ports({.ip = "203.0.113.7"}), kernex::error);
    CHECK_THROWS_AS(kernex::allocate_ports({.ip = "not an address!"}), kernex::error);
    CHECK_THROWS_AS(kernex::allocate_ports({.transport = "udp"}), kernex::error);
}

TEST_CASE("100 concurrent allocations in one process never share a port") {
    std::mutex m;
    std::vector<std::uint16_t> all;
    {
        std::vector<std::jthread> threads;
        for (int t = 0; t < 100; ++t)
            threads.emplace_back([&] {
                connection_info c = kernex::allocate_ports({});
                std::lock_guard lock(m);
                for (std::uint16_t p : ports_of(c)) all.push_back(p);
            });
    }
    REQUIRE(all.size() == 500);
    CHECK(std::set<std::uint16_t>(all.begin(), all.end()).size() == 500);
}

TEST_CASE("ipc numbers skip existing socket files and earlier allocations") {
    scratch_dir dir;
    const std::string prefix = (dir.path / "kernel-ipc").string();
    write_text(prefix + "-1", "");
    write_text(prefix + "-3", "");
    connection_info c = kernex::allocate_ports({.transport = "ipc", .ip = prefix});
    CHECK(c.ip == prefix);
    CHECK(ports_of(c) == std::vector<std::uint16_t>{2, 4, 5, 6, 7});
    CHECK(c.shell_endpoint() == "ipc://" + prefix + "-2");
    connection_info d = kernex::allocate_ports({.transport = "ipc", .ip = prefix});
    CHECK(ports_of(d) == std::vector<std::uint16_t>{8, 9, 10, 11, 12});
}

TEST_CASE("ipc without a prefix uses a private one in the runtime dir") {
    scratch_dir dir;
    scoped_env runtime("JUPYTER_RUNTIME_DIR", (dir.path / "rt").c_str());
    connection_info c = kernex::allocate_ports({.transport = "ipc"});
    CHECK(fs::path(c.ip).parent_path() == dir.path / "rt");
    CHECK(mode_of(dir.path / "rt") == 0700);
    CHECK(ports_of(c) == std::vector<std::uint16_t>{1, 2, 3, 4, 5});
}

TEST_CASE("an ipc prefix too long for a unix socket is refused") {
    CHECK_THROWS_WITH_AS(kernex::allocate_ports({.transport = "ipc", .ip = "/tmp/" + std::string(120, 'x')}),
                         doctest::Contains("too long"), kernex::error);
}

TEST_CASE("jupyter_runtime_dir follows jupyter_core's variables") {
    scoped_env runtime("JUPYTER_RUNTIME_DIR", "/r/rt");
    scoped_env data("JUPYTER_DATA_DIR", "/d/data");
    scoped_env xdg("XDG_DATA_HOME", "/x/xdg");
    CHECK(kernex::jupyter_runtime_dir() == "/r/rt");
    {
        scoped_env empty("JUPYTER_RUNTIME_DIR", "");  // empty counts as unset
        CHECK(kernex::jupyter_runtime_dir() == "/d/data/runtime");
        scoped_env no_data("JUPYTER_DATA_DIR", nullptr);
        CHECK(kernex::jupyter_runtime_dir() == "/x/xdg/jupyter/runtime");
        scoped_env no_xdg("XDG_DATA_HOME", nullptr);
        scoped_env home("HOME", "/");
        CHECK(kernex::jupyter_runtime_dir() == "/.local/share/jupyter/runtime");
    }
}
