// Executor option messages in the words of the command line: `kernex exec`
// and `kernex mcp` set make_executor's keys with flags, and the library's
// messages name the keys.
#include <cctype>
#include <regex>
#include <sstream>

#include "cli/commands.hpp"

namespace kernex::cli {

std::string in_flag_words(std::string text, const std::map<std::string, std::string>& flags,
                          const std::map<std::string, std::string>* every) {
    if (!every) every = &flags;
    auto replace_all = [&text](const std::string& from, const std::string& to, bool whole_word) {
        auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; };
        for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at)) {
            if (whole_word && ((at > 0 && word(text[at - 1])) ||
                               (at + from.size() < text.size() && word(text[at + from.size()])))) {
                at += from.size();
                continue;
            }
            text.replace(at, from.size(), to);
            at += to.size();
        }
    };
    static const std::regex unknown(R"(^unknown option '(\w+)' for executor (\w+); valid options: (.*)$)");
    if (std::smatch m; std::regex_match(text, m, unknown)) {
        std::string valid, flagless;
        std::istringstream keys(m[3].str());
        for (std::string key; std::getline(keys >> std::ws, key, ',');) {
            const auto f = every->find(key);
            if (f == every->end()) flagless += key + ", ";
            else if (valid.find(f->second + ",") == std::string::npos) valid += f->second + ", ";
        }
        const auto f = flags.find(m[1].str());
        return (f != flags.end() ? f->second : "option '" + m[1].str() + "'") + " is not for --executor " +
               m[2].str() + (valid.empty() ? "" : "; its flags: " + valid.substr(0, valid.size() - 2)) +
               (flagless.empty() ? "" : "; its options without a flag: " + flagless.substr(0, flagless.size() - 2));
    }
    // A switch the option needs ("needs sandbox: true"): its flag.
    for (const auto& [key, flag] : flags) replace_all(key + ": true", flag, true);
    for (const auto& [key, flag] : flags) replace_all("'" + key + "'", flag, false);
    for (const auto& [key, flag] : flags)
        if (key.find('_') != std::string::npos) replace_all(key, flag, true);
    static const std::regex option_of(R"(option (--[\w-]+) of executor \w+)");
    return std::regex_replace(text, option_of, "$1");
}

}  // namespace kernex::cli
