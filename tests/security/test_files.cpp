// Attacks on the files kernex writes where code can write: symlinks, hard
// links, FIFOs and device nodes planted at the names kernex uses, a dir on
// the way swapped for a symlink while kernex writes (the race), and the same
// through the executors and the CLI. Each checks that a canary outside the
// dir is unchanged and that nothing was created outside.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "confine/files.hpp"
#include "kernex/error.hpp"
#include "kernex/executor.hpp"
#include "kernex/local_executor.hpp"
#include "kernex/output_files.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using kernex::test::read_file;
using kernex::test::temp_dir;
using kernex::test::write_file;
namespace confine = kernex::confine;

namespace {

// A file outside the dir that an attack aims at.
struct canary {
    explicit canary(const fs::path& path) : path(path) { write_file(path, text); }
    bool intact() const { return fs::is_regular_file(fs::symlink_status(path)) && read_file(path) == text; }
    fs::path path;
    std::string text = "canary: must never change\n";
};

std::size_t entries(const fs::path& dir) {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::recursive_directory_iterator(dir)) ++n;
    return n;
}

// A FIFO opened for writing blocks until a reader comes: were kernex to open
// one, the test would hang. SIGALRM's default action ends the test instead.
struct hang_guard {
    explicit hang_guard(unsigned seconds) { ::alarm(seconds); }
    ~hang_guard() { ::alarm(0); }
};

// The attacker of the races: dir/d is a real dir one moment, a symlink to
// outside the next, for as long as it lives.
class swapper {
public:
    swapper(const fs::path& dir, const fs::path& outside)
        : m_thread([this, d = dir / "d", parked = dir / "parked", outside] {
              fs::create_directory(d);
              unsigned flips = 0;
              while (!m_stop) {
                  std::error_code ec;
                  fs::rename(d, parked, ec);
                  fs::create_directory_symlink(outside, d, ec);
                  std::this_thread::yield();
                  fs::remove(d, ec);
                  fs::rename(parked, d, ec);
                  std::this_thread::sleep_for(std::chrono::microseconds(50 + (++flips % 7) * 40));
              }
          }) {}
    ~swapper() {
        m_stop = true;
        m_thread.join();
    }

private:
    std::atomic<bool> m_stop{false};
    std::thread m_thread;
};

std::string kernex_program() { return std::string(std::getenv("KERNEX_BUILD_DIR")) + "/src/cli/kernex"; }

}  // namespace

TEST_CASE("numbered names put the number before the extension") {
    CHECK(confine::numbered_name("plot.png", 2) == "plot-2.png");
    CHECK(confine::numbered_name("d/Makefile", 3) == "d/Makefile-3");
    CHECK(confine::numbered_name(".env", 2) == ".env-2");
    CHECK(confine::numbered_name("a.b/c", 2) == "a.b/c-2");
    CHECK(confine::numbered_name("x.tar.gz", 4) == "x.tar-4.gz");
}

TEST_CASE("a symlink at the name is never followed: a fresh name, or the link replaced") {
    temp_dir dir, outside;
    canary target(outside / "target");
    fs::create_symlink(target.path, dir / "out.html");
    auto fd = confine::open_dir(dir.path());

    CHECK(confine::write_beneath(fd.get(), "out.html", "new") == "out-2.html");
    CHECK(target.intact());
    CHECK(fs::is_symlink(dir / "out.html"));
    CHECK(read_file(dir / "out-2.html") == "new");

    CHECK(confine::write_beneath(fd.get(), "out.html", "replaced", {.existing = confine::if_exists::replace}) ==
          "out.html");
    CHECK(target.intact());
    CHECK(fs::is_regular_file(fs::symlink_status(dir / "out.html")));
    CHECK(read_file(dir / "out.html") == "replaced");
}

TEST_CASE("a dangling symlink at the name does not create its target") {
    temp_dir dir, outside;
    fs::create_symlink(outside / "created", dir / "x.py");
    auto fd = confine::open_dir(dir.path());
    confine::write_beneath(fd.get(), "x.py", "code", {.existing = confine::if_exists::replace});
    CHECK_FALSE(fs::exists(outside / "created"));
    CHECK(read_file(dir / "x.py") == "code");
}

TEST_CASE("a hard link to a file elsewhere is never written through") {
    temp_dir dir, outside;
    canary target(outside / "target");
    fs::create_hard_link(target.path, dir / "x.sh");
    auto fd = confine::open_dir(dir.path());
    CHECK(confine::write_beneath(fd.get(), "x.sh", "fresh") == "x-2.sh");
    CHECK(target.intact());
    confine::write_beneath(fd.get(), "x.sh", "replaced", {.existing = confine::if_exists::replace});
    CHECK(target.intact());
    CHECK(fs::hard_link_count(target.path) == 1);
    CHECK(read_file(dir / "x.sh") == "replaced");
}

TEST_CASE("a FIFO at the name neither blocks nor receives the bytes") {
    temp_dir dir;
    REQUIRE(::mkfifo((dir / "out.png").c_str(), 0600) == 0);
    REQUIRE(::mkfifo((dir / "code.sh").c_str(), 0600) == 0);
    auto fd = confine::open_dir(dir.path());
    hang_guard guard(20);
    CHECK(confine::write_beneath(fd.get(), "out.png", "png") == "out-2.png");
    CHECK(fs::is_fifo(dir / "out.png"));
    confine::write_beneath(fd.get(), "code.sh", "echo", {.existing = confine::if_exists::replace});
    CHECK(fs::is_regular_file(fs::symlink_status(dir / "code.sh")));
}

TEST_CASE("a device node at the name is never opened") {
    if (::geteuid() != 0) {
        MESSAGE("needs root to make a device node; skipped");
        return;
    }
    temp_dir dir;
    // /dev/zero's numbers: had kernex opened it for writing, the write would
    // succeed silently and the name would still be a device.
    REQUIRE(::mknod((dir / "tmp_code.sh").c_str(), S_IFCHR | 0666, makedev(1, 5)) == 0);
    auto fd = confine::open_dir(dir.path());
    confine::write_beneath(fd.get(), "tmp_code.sh", "echo hi", {.existing = confine::if_exists::replace});
    CHECK(fs::is_regular_file(fs::symlink_status(dir / "tmp_code.sh")));
    CHECK(read_file(dir / "tmp_code.sh") == "echo hi");
}

TEST_CASE("a symlink or a file where a dir of the name should be is refused; nothing is made outside") {
    // The work dir inside a dir of the test's own, so that "../x.py" would land where nothing else writes.
    temp_dir above, outside;
    const fs::path dir = above / "work";
    fs::create_directory(dir);
    fs::create_directory_symlink(outside.path(), dir / "d");
    write_file(dir / "f", "a file");
    auto fd = confine::open_dir(dir);
    for (const std::string name : {"d/x.py", "d/sub/x.py", "f/x.py", "../x.py", "a/../../x.py", "/etc/x", ".", ""}) {
        CAPTURE(name);
        CHECK_THROWS_AS(confine::write_beneath(fd.get(), name, "no", {.existing = confine::if_exists::replace}),
                        kernex::error);
    }
    CHECK(entries(outside.path()) == 0);
    CHECK(std::distance(fs::directory_iterator(above.path()), fs::directory_iterator()) == 1);  // only the work dir
}

TEST_CASE("files are 0600 and the dirs made on the way 0700, whatever the umask allows") {
    temp_dir dir;
    auto fd = confine::open_dir(dir.path());
    CHECK(confine::write_beneath(fd.get(), "a/b/c.txt", "x") == "a/b/c.txt");
    CHECK((fs::status(dir / "a/b/c.txt").permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write));
    CHECK((fs::status(dir / "a").permissions() & fs::perms::all) == fs::perms::owner_all);
    CHECK((fs::status(dir / "a/b").permissions() & fs::perms::all) == fs::perms::owner_all);
}

TEST_CASE("a name too long for the file system says so") {
    temp_dir dir;
    auto fd = confine::open_dir(dir.path());
    try {
        confine::write_beneath(fd.get(), std::string(300, 'n') + ".py", "x");
        FAIL("no error");
    } catch (const kernex::error& e) {
        CHECK(e.code() == kernex::errc::io_error);
        CHECK(std::string(e.what()).find("too long") != std::string::npos);
    }
}

TEST_CASE("race: a dir on the way swapped for a symlink during 500 writes never leads outside") {
    temp_dir dir, outside;
    auto fd = confine::open_dir(dir.path());
    int written = 0, refused = 0;
    {
        swapper attacker(dir.path(), outside.path());
        for (int i = 0; i < 500; ++i) {
            try {
                confine::write_beneath(fd.get(), "d/x.sh", "echo " + std::to_string(i),
                                       {.existing = confine::if_exists::replace});
                ++written;
            } catch (const kernex::error& e) {
                if (refused++ == 0) MESSAGE("first refusal: " << std::string(e.what()));
            }
        }
    }
    MESSAGE("written " << written << ", refused " << refused);
    CHECK(entries(outside.path()) == 0);
    CHECK(written + refused == 500);
}

TEST_CASE("race through the local executor: a filename directive under a swapped dir never escapes") {
    temp_dir dir, outside;
    kernex::local_executor_options o;
    o.work_dir = dir / "work";
    o.timeout = std::chrono::seconds(20);
    kernex::local_executor ex(o);
    int written = 0;
    {
        swapper attacker(ex.work_dir(), outside.path());
        for (int i = 0; i < 200; ++i)
            written += static_cast<int>(ex.execute({{"sh", "# filename: d/x.sh\nexit 0\n"}}).code_files.size());
    }
    MESSAGE("block file written " << written << " times of 200");
    CHECK(entries(outside.path()) == 0);
}

TEST_CASE("save_output_files: a planted link, FIFO or file at an output's name gets a fresh name") {
    temp_dir dir, outside;
    canary target(outside / "target");
    fs::create_symlink(target.path, dir / "plot.html");
    REQUIRE(::mkfifo((dir / "plot.svg").c_str(), 0600) == 0);
    write_file(dir / "plot.png", "earlier run's plot");
    hang_guard guard(20);
    const nlohmann::json bundle = {
        {"text/html", "<b>x</b>"}, {"image/svg+xml", "<svg/>"}, {"image/png", "iVBORw0KGgo="}};
    const auto files = kernex::save_output_files(bundle, dir.path(), "plot");
    REQUIRE(files.size() == 3);
    CHECK(files[0] == dir / "plot-2.png");
    CHECK(files[1] == dir / "plot-2.svg");
    CHECK(files[2] == dir / "plot-2.html");
    CHECK(target.intact());
    CHECK(read_file(dir / "plot.png") == "earlier run's plot");
    CHECK(read_file(dir / "plot-2.html") == "<b>x</b>");
}

TEST_CASE("jupyter executor: a link planted in the output dir is not written through") {
    temp_dir dir, outside;
    canary target(outside / "target");
    const fs::path out = dir / "out";
    fs::create_directories(out);
    fs::create_symlink(target.path, out / "output-block1-1.html");
    auto ex = kernex::make_executor(
        {{"executor", "jupyter"}, {"kernel_name", "kernex-test"}, {"output_dir", out.string()}, {"timeout", 30}});
    auto r = ex->execute({{"test", "display_html <p>hello</p>"}});
    ex->stop();
    CHECK(target.intact());
    REQUIRE(r.output_files.size() == 1);
    CHECK(r.output_files[0] == out / "output-block1-1-2.html");
    CHECK(read_file(out / "output-block1-1-2.html") == "<p>hello</p>");
    CHECK(r.output.find((out / "output-block1-1-2.html").string()) != std::string::npos);  // the user sees the name used
}

TEST_CASE("kernex run: a link planted at the next output's name is not written through") {
    temp_dir dir, outside;
    canary target(outside / "target");
    write_file(dir / "cells.txt", "display_html <p>one</p>\n");
    fs::create_symlink(target.path, dir / "cells-cell1-1.html");
    const std::string command = "cd " + dir.path().string() + " && " + kernex_program() +
                                " run --kernel kernex-test cells.txt > run.out 2>&1";
    hang_guard guard(60);
    CHECK(std::system(command.c_str()) == 0);
    CHECK(target.intact());
    CHECK(read_file(dir / "cells-cell1-1-2.html") == "<p>one</p>");
    CHECK(read_file(dir / "run.out").find("cells-cell1-1-2.html") != std::string::npos);
}
