// The environment policy: what code run by kernex inherits from the host.
// By default a clean environment (PATH, HOME, LANG, LC_*, TERM, TZ, USER
// as the host has them, and the sanitizers' *SAN_OPTIONS), so API keys, KERNEX_GATEWAY_TOKEN or DOCKER_HOST
// never reach a block or a local kernel unless the user names them. Used by
// the local executor and local kernels (the jupyter executor's included).
// Internal to the library.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kernex::detail {

// The whole environment for code: the host's allowed variables (or all of
// them with inherit), then `added` on top (the kernelspec's env, then the
// caller's, as jupyter_client layers them).
std::map<std::string, std::string> code_environment(const std::map<std::string, std::string>& added, bool inherit);

// "NAME=VALUE" -> {NAME, VALUE}; "NAME" alone -> {NAME, the host's value},
// nothing when the host has no NAME. Throws kernex::error(invalid_argument)
// for an empty or malformed name.
std::vector<std::pair<std::string, std::string>> parse_env_assignment(std::string_view text);

// Whether a host variable passes the default policy.
bool allowed_by_default(std::string_view name) noexcept;

}  // namespace kernex::detail
