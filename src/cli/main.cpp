// kernex: run code in Jupyter kernels, local processes and containers.
// Exit status: what the subcommand returns; 2 for usage and setup errors.
#include <cstdio>
#include <iostream>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "kernex/error.hpp"

int main(int argc, char** argv) {
    CLI::App app{
        "kernex: run code for programs and people, statefully in any Jupyter kernel\n"
        "(local or remote) or statelessly in a local process or a Docker container.",
        "kernex"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "kernex 0.1.0");

    std::vector<std::pair<CLI::App*, kernex::cli::command_runner>> commands;
    auto add = [&](kernex::cli::command_runner runner) {
        // get_subcommands() without a filter lists only the parsed ones.
        auto all = app.get_subcommands([](CLI::App*) { return true; });
        commands.emplace_back(all.back(), std::move(runner));
    };
    // Subcommands, in the order --help lists them.
    add(kernex::cli::add_run_command(app));
    add(kernex::cli::add_exec_command(app));
    add(kernex::cli::add_mcp_command(app));
    add(kernex::cli::add_kernel_command(app));
    add(kernex::cli::add_kernelspec_command(app));

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }

    try {
        for (auto& [sub, run] : commands)
            if (sub->parsed()) return run();
    } catch (const kernex::error& e) {
        std::cerr << "kernex: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "kernex: internal error: " << e.what() << "\n";
        return 2;
    }
    return 2;
}
