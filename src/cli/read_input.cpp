// Reading a command's input: a file named on the command line, or stdin.
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.hpp"
#include "kernex/error.hpp"

namespace kernex::cli {

std::string read_input(const std::string& file) {
    std::ostringstream text;
    if (file == "-") {
        text << std::cin.rdbuf();
        return text.str();
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) throw error(errc::not_found, "cannot read " + file + ": no such file or not readable");
    text << in.rdbuf();
    return text.str();
}

}  // namespace kernex::cli
