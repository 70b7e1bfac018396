// A program that embeds kernex: it starts a python3 kernel, runs two cells
// that share a variable, streams a cell's output as it arrives, and runs a
// bash block through the executor interface. Built against an installed
// kernex by meson.build (dependency('kernex')) and CMakeLists.txt
// (pkg-config); see docs/embedding.md. Exits 0 when everything it checks
// holds, 1 otherwise, 2 when kernex throws.
#include <chrono>
#include <iostream>
#include <string>
#include <variant>

#include <kernex/error.hpp>
#include <kernex/executor.hpp>
#include <kernex/kernel_manager.hpp>

using namespace std::chrono_literals;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    std::cout << (ok ? "ok: " : "FAILED: ") << what << "\n";
    if (!ok) ++failures;
}

}  // namespace

int main() try {
    {
        // One kernel, one session: its lifetime is km's (the destructor shuts it down).
        auto km = kernex::kernel_manager::start({.kernel_name = "python3"});
        kernex::kernel_client& kc = km.client();

        kc.execute("x = 41", {.timeout = 30s});
        kernex::execution r = kc.execute("x + 1", {.timeout = 30s});
        check(r.status == kernex::execution_status::ok && r.result_text() == "42",
              "two cells share a variable: x + 1 = " + r.result_text().value_or("(none)"));

        // Outputs reach on_output as they arrive, before execute() returns.
        std::string streamed;
        kc.execute("for i in range(3): print('line', i, flush=True)",
                   {.timeout = 30s, .on_output = [&](const kernex::output& o) {
                        if (const auto* s = std::get_if<kernex::outputs::stream>(&o)) {
                            std::cout << "streamed: " << s->text;
                            streamed += s->text;
                        }
                    }});
        check(streamed == "line 0\nline 1\nline 2\n", "on_output saw the three lines");
    }

    // Stateless: a bash block in a local process, through make_executor.
    auto ex = kernex::make_executor({{"executor", "local"}, {"timeout", 10}});
    kernex::code_result res = ex->execute(kernex::extract_code_blocks("```bash\necho \"bash says $((6 * 7))\"\n```\n"));
    ex->stop();
    check(res.exit_code == 0 && res.output == "bash says 42\n", "the bash block printed: " + res.output);

    std::cout << (failures == 0 ? "embed: all checks passed\n" : "embed: some checks failed\n");
    return failures == 0 ? 0 : 1;
} catch (const kernex::error& e) {
    std::cerr << "embed: kernex error (" << kernex::to_string(e.code()) << "): " << e.what() << "\n";
    return 2;
}
