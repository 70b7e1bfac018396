// Kernelspec discovery, kernel.json parsing and argv templating.
#include <doctest/doctest.h>

#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "kernex/error.hpp"
#include "kernex/kernelspec.hpp"

namespace fs = std::filesystem;
using kernex::errc;

namespace {

// A sandbox: a temp tree with every variable the search path reads pointed
// inside it (home, data dir, IPython dir), restored afterwards.
class jupyter_sandbox {
public:
    fs::path root;

    jupyter_sandbox() {
        std::string tmpl = (fs::temp_directory_path() / "kernex-spec-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        root = tmpl;
        set("HOME", (root / "home").string());
        set("JUPYTER_DATA_DIR", (root / "data").string());
        set("IPYTHONDIR", (root / "ipython").string());
        set("JUPYTER_PATH", (root / "a").string() + ":" + (root / "b").string() + "/");
        set("XDG_DATA_HOME", std::nullopt);
        set("PYTHONUSERBASE", std::nullopt);
        set("PYTHONNOUSERSITE", std::nullopt);
    }
    ~jupyter_sandbox() {
        for (auto it = m_saved.rbegin(); it != m_saved.rend(); ++it)
            it->second ? ::setenv(it->first.c_str(), it->second->c_str(), 1) : ::unsetenv(it->first.c_str());
        std::error_code ec;
        fs::remove_all(root, ec);
    }

    void set(const std::string& name, const std::optional<std::string>& value) {
        const char* old = std::getenv(name.c_str());
        m_saved.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
        value ? ::setenv(name.c_str(), value->c_str(), 1) : ::unsetenv(name.c_str());
    }

    // Writes <base>/kernels/<dir>/kernel.json and returns the resource dir.
    fs::path add_kernel(const fs::path& base, const std::string& dir, const std::string& json) {
        fs::path resource = base / "kernels" / dir;
        fs::create_directories(resource);
        std::ofstream(resource / "kernel.json") << json;
        return resource;
    }
    fs::path add_kernel(const fs::path& base, const std::string& dir) {
        return add_kernel(base, dir, R"({"argv": ["run", "{connection_file}"], "display_name": ")" + dir + R"("})");
    }

private:
    std::vector<std::pair<std::string, std::optional<std::string>>> m_saved;
};

std::optional<kernex::kernelspec_location> listed(const std::string& name) {
    for (const auto& loc : kernex::list_kernelspecs())
        if (loc.name == name) return loc;
    return std::nullopt;
}

// Loads a kernel.json holding `json` and returns the error it raises.
kernex::error load_error(jupyter_sandbox& box, const std::string& json) {
    fs::path dir = box.add_kernel(box.root / "bad", "broken", json);
    try {
        kernex::load_kernelspec(dir);
    } catch (const kernex::error& e) {
        return e;
    }
    FAIL("no error for " << json);
    return kernex::error(errc::io_error, "unreachable");
}

void check_parse_error(jupyter_sandbox& box, const std::string& json, const std::string& mentions) {
    CAPTURE(json);
    kernex::error e = load_error(box, json);
    CHECK(e.code() == errc::invalid_argument);
    const std::string what = e.what();
    CHECK(what.find((box.root / "bad" / "kernels" / "broken" / "kernel.json").string()) != std::string::npos);
    CHECK(what.find(mentions) != std::string::npos);
}

}  // namespace

TEST_CASE("the data path: JUPYTER_PATH entries, the user dirs, then the system dirs") {
    jupyter_sandbox box;
    std::vector<fs::path> expected = {box.root / "a", box.root / "b", box.root / "data",
                                      box.root / "home" / ".local" / "share" / "jupyter",
                                      "/usr/local/share/jupyter", "/usr/share/jupyter"};
    CHECK(kernex::jupyter_data_path() == expected);

    // Duplicates appear once; Python's user base is dropped when disabled.
    box.set("JUPYTER_PATH", "/usr/share/jupyter:" + (box.root / "a").string() + ":" + (box.root / "a").string());
    box.set("PYTHONNOUSERSITE", "1");
    expected = {"/usr/share/jupyter", box.root / "a", box.root / "data", "/usr/local/share/jupyter"};
    CHECK(kernex::jupyter_data_path() == expected);

    std::vector<fs::path> dirs = kernex::kernelspec_dirs();
    REQUIRE(dirs.size() == expected.size() + 1);
    CHECK(dirs.front() == fs::path("/usr/share/jupyter/kernels"));
    CHECK(dirs.back() == box.root / "ipython" / "kernels");
}

TEST_CASE("the user data dir: JUPYTER_DATA_DIR, else XDG_DATA_HOME, else ~/.local/share") {
    jupyter_sandbox box;
    CHECK(kernex::jupyter_data_dir() == box.root / "data");
    box.set("JUPYTER_DATA_DIR", "");
    box.set("XDG_DATA_HOME", (box.root / "xdg").string());
    CHECK(kernex::jupyter_data_dir() == box.root / "xdg" / "jupyter");
    box.set("XDG_DATA_HOME", std::nullopt);
    fs::create_directories(box.root / "real-home");
    fs::create_directory_symlink(box.root / "real-home", box.root / "home");
    // jupyter_core resolves the home directory's symlinks.
    CHECK(kernex::jupyter_data_dir() == box.root / "real-home" / ".local" / "share" / "jupyter");
}

TEST_CASE("search order: the first directory holding a name wins, case-insensitively") {
    jupyter_sandbox box;
    fs::path in_a = box.add_kernel(box.root / "a", "MyKern");
    box.add_kernel(box.root / "b", "mykern");
    box.add_kernel(box.root / "data", "MYKERN");
    fs::path only_b = box.add_kernel(box.root / "b", "Only-B");
    fs::path user = box.add_kernel(box.root / "data", "user.kernel");
    fs::path ipy = box.add_kernel(box.root / "ipython", "legacy");
    box.add_kernel(box.root / "ipython", "only-b");
    fs::path base = box.add_kernel(box.root / "home" / ".local" / "share" / "jupyter", "from_userbase");

    CHECK(listed("mykern")->resource_dir == in_a);
    CHECK(listed("only-b")->resource_dir == only_b);
    CHECK(listed("user.kernel")->resource_dir == user);
    CHECK(listed("legacy")->resource_dir == ipy);
    CHECK(listed("from_userbase")->resource_dir == base);
    CHECK_FALSE(listed("MyKern"));

    std::vector<kernex::kernelspec_location> all = kernex::list_kernelspecs();
    for (std::size_t i = 1; i < all.size(); ++i) CHECK(all[i - 1].name < all[i].name);

    kernex::kernelspec k = kernex::find_kernelspec("MYKERN");
    CHECK(k.name == "mykern");
    CHECK(k.resource_dir == in_a);
    CHECK(k.display_name == "MyKern");
    CHECK(kernex::find_kernelspec("only-B").resource_dir == only_b);
}

TEST_CASE("directories without a kernel.json are not kernelspecs") {
    jupyter_sandbox box;
    fs::create_directories(box.root / "a" / "kernels" / "empty");
    fs::create_directories(box.root / "a" / "kernels" / "odd" / "kernel.json");  // a directory
    std::ofstream(box.root / "a" / "kernels" / "plainfile") << "{}";
    fs::path real = box.add_kernel(box.root / "b", "empty");
    CHECK(listed("empty")->resource_dir == real);
    CHECK_FALSE(listed("odd"));
    CHECK_FALSE(listed("plainfile"));
}

TEST_CASE("names outside Jupyter's rule are listed, as jupyter_client lists them") {
    jupyter_sandbox box;
    fs::path spaced = box.add_kernel(box.root / "a", "Bad Name");
    CHECK(listed("bad name")->resource_dir == spaced);
}

TEST_CASE("an unknown name is not_found, listing the available names and how to install one") {
    jupyter_sandbox box;
    box.add_kernel(box.root / "a", "Alpha");
    box.add_kernel(box.root / "data", "beta");
    try {
        kernex::find_kernelspec("gamma");
        FAIL("no error");
    } catch (const kernex::error& e) {
        CHECK(e.code() == errc::not_found);
        const std::string what = e.what();
        CHECK(what.find("'gamma'") != std::string::npos);
        CHECK(what.find("alpha") != std::string::npos);
        CHECK(what.find("beta") != std::string::npos);
        CHECK(what.find("ipykernel install --user") != std::string::npos);
        CHECK(what.find("python3-ipykernel") != std::string::npos);
        CHECK(what.find((box.root / "a" / "kernels").string()) != std::string::npos);
    }
}

TEST_CASE("every field of kernel.json is read") {
    jupyter_sandbox box;
    fs::path dir = box.add_kernel(box.root / "a", "Full", R"({
        "argv": ["/usr/bin/k", "-f", "{connection_file}"],
        "display_name": "Full Kernel",
        "language": "full",
        "interrupt_mode": "Message",
        "env": {"A": "1", "B": ""},
        "metadata": {"debugger": true, "nested": {"x": [1, 2]}},
        "mimetype": "text/x-full",
        "unknown_field": 42
    })");
    kernex::kernelspec k = kernex::load_kernelspec(dir);
    CHECK(k.name == "full");
    CHECK(k.resource_dir == dir);
    CHECK(k.argv == std::vector<std::string>{"/usr/bin/k", "-f", "{connection_file}"});
    CHECK(k.display_name == "Full Kernel");
    CHECK(k.language == "full");
    CHECK(k.interrupt_mode == kernex::interrupt_mode::message);
    CHECK(k.env == std::map<std::string, std::string>{{"A", "1"}, {"B", ""}});
    CHECK(k.metadata["debugger"] == true);
    CHECK(k.metadata["nested"]["x"][1] == 2);
    CHECK(kernex::load_kernelspec(dir, "chosen").name == "chosen");
}

TEST_CASE("optional fields have Jupyter's defaults") {
    jupyter_sandbox box;
    fs::path dir = box.add_kernel(box.root / "a", "min", R"({"argv": ["k"]})");
    kernex::kernelspec k = kernex::load_kernelspec(dir);
    CHECK(k.display_name.empty());
    CHECK(k.language.empty());
    CHECK(k.interrupt_mode == kernex::interrupt_mode::signal);
    CHECK(k.env.empty());
    CHECK(k.metadata == nlohmann::json::object());
}

TEST_CASE("each malformed kernel.json is an error naming the file and what is wrong") {
    jupyter_sandbox box;
    check_parse_error(box, "{", "not valid JSON");
    check_parse_error(box, "", "not valid JSON");
    // nlohmann reports a number too large for a double as out_of_range, not parse_error.
    check_parse_error(box, R"({"argv": 1e1111111111})", "not valid JSON");
    check_parse_error(box, R"(["k"])", "JSON object");
    check_parse_error(box, R"({"display_name": "x"})", "\"argv\" is missing");
    check_parse_error(box, R"({"argv": "k -f {connection_file}"})", "\"argv\" must be a list of strings");
    check_parse_error(box, R"({"argv": []})", "\"argv\" is empty");
    check_parse_error(box, R"({"argv": ["k", 3]})", "\"argv\"[1] must be a string");
    check_parse_error(box, R"({"argv": ["k"], "display_name": 5})", "\"display_name\" must be a string");
    check_parse_error(box, R"({"argv": ["k"], "language": ["c"]})", "\"language\" must be a string");
    check_parse_error(box, R"({"argv": ["k"], "interrupt_mode": "sigint"})", "\"interrupt_mode\" must be");
    check_parse_error(box, R"({"argv": ["k"], "interrupt_mode": ""})", "\"interrupt_mode\" must be");
    check_parse_error(box, R"({"argv": ["k"], "interrupt_mode": 1})", "\"interrupt_mode\" must be a string");
    check_parse_error(box, R"({"argv": ["k"], "env": ["A=1"]})", "\"env\" must be an object");
    check_parse_error(box, R"({"argv": ["k"], "env": {"A": 1}})", "\"env\".\"A\" must be a string");
    check_parse_error(box, R"({"argv": ["k"], "metadata": "x"})", "\"metadata\" must be an object");
}

TEST_CASE("a resource dir without kernel.json is not_found") {
    jupyter_sandbox box;
    fs::create_directories(box.root / "nothing");
    CHECK_THROWS_WITH_AS(kernex::load_kernelspec(box.root / "nothing"), doctest::Contains("kernel.json"),
                         kernex::error);
    try {
        kernex::load_kernelspec(box.root / "nothing");
    } catch (const kernex::error& e) {
        CHECK(e.code() == errc::not_found);
    }
}

TEST_CASE("render_argv substitutes both placeholders anywhere in each argument") {
    kernex::kernelspec k;
    k.resource_dir = "/opt/k/res";
    k.argv = {"{resource_dir}/bin/kernel", "-f", "{connection_file}", "--conn={connection_file}",
              "{resource_dir}:{resource_dir}", "{prefix}/keep", "{connection_file", "plain"};
    CHECK(k.render_argv("/run/kernel-1.json") ==
          std::vector<std::string>{"/opt/k/res/bin/kernel", "-f", "/run/kernel-1.json", "--conn=/run/kernel-1.json",
                                   "/opt/k/res:/opt/k/res", "{prefix}/keep", "{connection_file", "plain"});
}

TEST_CASE("render_argv makes the connection file absolute and never expands substituted text") {
    kernex::kernelspec k;
    k.resource_dir = "/res/{connection_file}";
    k.argv = {"{connection_file}", "{resource_dir}"};
    std::vector<std::string> out = k.render_argv("/tmp/{resource_dir}.json");
    CHECK(out == std::vector<std::string>{"/tmp/{resource_dir}.json", "/res/{connection_file}"});
    CHECK(k.render_argv("rel.json")[0] == (fs::current_path() / "rel.json").string());
}

TEST_CASE("argv[0] python/python3 runs the interpreter owning the kernelspec's tree, as jupyter_client does") {
    jupyter_sandbox box;
    box.set("KERNEX_KERNELSPEC_PYTHON", std::nullopt);
    const fs::path prefix = box.root / "venv";
    const fs::path share = prefix / "share" / "jupyter";
    fs::create_directories(prefix / "bin");
    for (const char* name : {"python3", "python3.11"}) {
        std::ofstream(prefix / "bin" / name) << "#!/bin/sh\n";
        fs::permissions(prefix / "bin" / name, fs::perms::owner_all);
    }
    auto argv0 = [&](const fs::path& base, const std::string& first) {
        const fs::path dir = box.add_kernel(base, "k", R"({"argv": [")" + first + R"(", "-m", "k"]})");
        const kernex::kernelspec spec = kernex::load_kernelspec(dir);
        CHECK(spec.argv.front() == first);  // as kernel.json says: resolved at launch
        return spec.render_argv("c.json").front();
    };
    CHECK(argv0(share, "python3") == (prefix / "bin" / "python3").string());
    CHECK(argv0(share, "python") == (prefix / "bin" / "python3").string());
    CHECK(argv0(share, "python3.11") == (prefix / "bin" / "python3.11").string());
    CHECK(argv0(share, "python3.12") == (prefix / "bin" / "python3").string());
    // Not bare Python names: left alone.
    CHECK(argv0(share, "python3-config") == "python3-config");
    CHECK(argv0(share, "/opt/py/python3") == "/opt/py/python3");
    CHECK(argv0(share, "ipython") == "ipython");
    // Outside a <prefix>/share/jupyter tree: Debian's jupyter_client's interpreter.
    if (fs::exists("/usr/bin/python3")) CHECK(argv0(box.root / "a", "python") == "/usr/bin/python3");
    // The way to turn it off, and to choose the interpreter.
    box.set("KERNEX_KERNELSPEC_PYTHON", "off");
    CHECK(argv0(share, "python3") == "python3");
    box.set("KERNEX_KERNELSPEC_PYTHON", "/opt/other/python3");
    CHECK(argv0(share, "python") == "/opt/other/python3");
}
