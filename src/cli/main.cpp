// kernex: run code in Jupyter kernels, local processes and containers.
// Exit status: what the subcommand returns; 2 for usage and setup errors.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "docker/ledger.hpp"
#include "kernex/error.hpp"

namespace {

// One example line per command, at the end of its --help.
void add_examples(CLI::App& app) {
    static const std::pair<const char*, const char*> examples[] = {
        {"", "kernex run analysis.py   (kernex COMMAND --help for each command)"},
        {"run", "kernex run --kernel python3 --timeout 30 analysis.py more.py"},
        {"exec", "kernex exec --executor local --timeout 10 reply.md"},
        {"mcp", "kernex mcp --executor local   (an MCP client starts it, speaking on stdin and stdout)"},
        {"kernel", "kernex kernel start --kernel python3 &   kernex kernel list"},
        {"kernel start", "kernex kernel start --kernel python3   (prints the connection file)"},
        {"kernel list", "kernex kernel list --prune"},
        {"kernel stop", "kernex kernel stop 5f3c2a   (an id from `kernex kernel list`)"},
        {"kernel interrupt", "kernex kernel interrupt kernel-5f3c2a.json"},
        {"kernel shutdown", "kernex kernel shutdown kernel-5f3c2a.json"},
        {"complete", "kernex complete kernel-5f3c2a.json 'import o'"},
        {"inspect", "kernex inspect kernel-5f3c2a.json 'len(' 3"},
        {"kernelspec", "kernex kernelspec list"},
        {"kernelspec list", "kernex kernelspec list --json"},
    };
    for (const auto& [path, example] : examples) {
        CLI::App* cmd = &app;
        std::istringstream words(path);
        for (std::string word; cmd && words >> word;) {
            const auto found = cmd->get_subcommands([&word](CLI::App* s) { return s->get_name() == word; });
            cmd = found.empty() ? nullptr : found.front();  // a command not built for this call
        }
        if (!cmd) continue;
        const std::string footer = cmd->get_footer();
        cmd->footer((footer.empty() ? "" : footer + "\n") + "Example: " + example);
    }
}

// Optimal string alignment distance (a swap of two letters counts once).
std::size_t distance(const std::string& a, const std::string& b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i)
        for (std::size_t j = 1; j <= b.size(); ++j) {
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[a.size()][b.size()];
}

// A parse error, said as every kernex message is ("kernex: ..."), with the
// command the user probably meant when a word is close to one (git's way):
// `kernex kernelspec lst` -> did you mean 'list'?
// Markdown text of a cell: one line, '|' escaped.
std::string table_cell(std::string text) {
    std::string out;
    for (char c : text) {
        if (c == '\n') out += ' ';
        else if (c == '|') out += "\\|";
        else out += c;
    }
    return out;
}

// The table of every flag of every subcommand, in the order --help lists
// them, from the definitions themselves: docs/cli.md holds it, and a test
// regenerates it (`kernex flag-table`) and compares, so it cannot drift.
void print_flag_table(CLI::App& app, const std::string& path, std::ostream& out) {
    for (CLI::App* sub : app.get_subcommands([](CLI::App* s) { return !s->get_group().empty(); })) {
        const std::string command = path + " " + sub->get_name();
        for (const CLI::Option* o : sub->get_options()) {
            if (o->get_name() == "--help" || o->get_name() == "-h,--help") continue;
            std::string names = o->nonpositional() ? o->get_name(false, true) : o->get_name(true);
            for (std::size_t at = names.find(','); at != std::string::npos; at = names.find(',', at + 2))
                names.replace(at, 1, ", ");
            // What --help shows it takes (option_text: "auto|always|never"), else its type.
            std::string takes = o->get_type_size() == 0            ? std::string()
                                : !o->get_option_text().empty() ? o->get_option_text()
                                                                : o->get_type_name();
            if (!o->get_default_str().empty()) takes += " (default " + o->get_default_str() + ")";
            out << "| `" << command << "` | `" << names << "` | " << table_cell(takes) << " | "
                << table_cell(o->get_description()) << " |\n";
        }
        print_flag_table(*sub, command, out);
    }
}

// Every line kernex prints on stderr is its own: a message of several lines
// (an unknown kernelspec's, with the dirs searched) gets "kernex: " on each.
void say_error(std::string_view text) {
    while (!text.empty()) {
        const auto end = text.find('\n');
        std::cerr << "kernex: " << text.substr(0, end) << "\n";
        if (end == std::string_view::npos) break;
        text.remove_prefix(end + 1);
    }
}

int usage_error(CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
    // The deepest command the parser entered, and the words after its name.
    CLI::App* cmd = &app;
    std::string path = "kernex";
    int next = 1;
    for (auto subs = cmd->get_subcommands(); !subs.empty(); subs = cmd->get_subcommands()) {
        cmd = subs.front();
        path += " " + cmd->get_name();
        for (int i = next; i < argc; ++i)
            if (cmd->get_name() == argv[i]) {
                next = i + 1;
                break;
            }
    }
    // A word that is not a command of cmd says so (with the nearest one);
    // then CLI11's own complaint ("A subcommand is required") would mislead.
    std::string unknown;
    const auto commands = cmd->get_subcommands([](CLI::App*) { return true; });
    for (int i = next; i < argc && !commands.empty(); ++i) {
        const std::string word = argv[i];
        if (word.starts_with("-")) continue;
        std::string best;
        std::size_t best_distance = 3;  // at most 2 edits away
        for (const auto* c : commands)
            if (auto d = distance(word, c->get_name()); d < best_distance) {
                best_distance = d;
                best = c->get_name();
            }
        if (best_distance == 0) break;
        unknown = "'" + word + "' is not a " + path + " command" + (best.empty() ? "" : "; did you mean '" + best + "'?");
        break;
    }
    say_error(unknown.empty() ? std::string(e.what()) : unknown);
    std::cerr << "kernex: see '" << path << " --help'\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    // Containers of kernex processes killed with their container reaper
    // (docker/ledger.hpp): removed at the next start, whatever the command.
    kernex::docker::sweep_ledger();
    CLI::App app{
        "kernex: run code for programs and people, statefully in any Jupyter kernel\n"
        "(local or remote) or statelessly in a local process or a Docker container.",
        "kernex"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "kernex 0.1.0");

    // Subcommands, in the order --help lists them. Only the one named on the
    // command line gets its options built (with its subcommands): building
    // every command's options was most of the CPU `kernex --version` spent
    // once the dynamic loader's share was gone (docs/benchmarks.md, CLI
    // process start). --version builds none; --help, a word that is no
    // command, flag-table: all of them.
    static constexpr std::pair<const char*, kernex::cli::command_runner (*)(CLI::App&)> all_commands[] = {
        {"run", kernex::cli::add_run_command},
        {"exec", kernex::cli::add_exec_command},
        {"mcp", kernex::cli::add_mcp_command},
        {"kernel", kernex::cli::add_kernel_command},
        {"kernelspec", kernex::cli::add_kernelspec_command},
        {"complete", kernex::cli::add_complete_command},
        {"inspect", kernex::cli::add_inspect_command},
    };
    const std::string first = argc > 1 ? argv[1] : "";
    const bool named = std::any_of(std::begin(all_commands), std::end(all_commands),
                                   [&](const auto& c) { return first == c.first; });
    std::vector<std::pair<CLI::App*, kernex::cli::command_runner>> commands;
    for (const auto& [name, add_command] : all_commands) {
        if (named ? first != name : argc == 2 && first == "--version") continue;
        kernex::cli::command_runner runner = add_command(app);
        // get_subcommands() without a filter lists only the parsed ones.
        commands.emplace_back(app.get_subcommands([](CLI::App*) { return true; }).back(), std::move(runner));
    }

    add_examples(app);
    // Hidden (no group): prints docs/cli.md's flag table.
    auto* flag_table = app.add_subcommand("flag-table", "")->group("");
    flag_table->callback([&app] {
        std::cout << "| command | flag | takes | what it does |\n|---|---|---|---|\n";
        print_flag_table(app, "kernex", std::cout);
    });

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version: on stdout
        return usage_error(app, e, argc, argv);
    }

    if (flag_table->parsed()) return 0;
    try {
        for (auto& [sub, run] : commands)
            if (sub->parsed()) return run();
    } catch (const kernex::error& e) {
        say_error(e.what());
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "kernex: internal error: " << e.what() << "\n";
        return 2;
    }
    return 2;
}
