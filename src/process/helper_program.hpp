// helper_program: where kernex's own helper programs are (kernex-reaper: the
// container reaper that speaks TLS). A helper is a program of its own, not
// a fork of the caller, where it needs what a forked child of a threaded
// process may not use (OpenSSL, the allocator's locks held by other threads).
// Internal.
#pragma once

#include <filesystem>
#include <string_view>

namespace kernex::detail {

// The helper's path: in $KERNEX_LIBEXEC_DIR when that is set (an uninstalled
// build; the tests set it to the build dir), else in <libexecdir>/kernex of
// the installation. Empty when it is not there or not executable.
std::filesystem::path helper_program(std::string_view name);

// Where helpers are looked for, for messages ("... not found in DIR").
std::filesystem::path helper_dir();

}  // namespace kernex::detail
