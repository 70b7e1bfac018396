// SHA-256 (FIPS 180-4) of our own, for what hashes a few bytes in a process
// that should not load libcrypto for it: the local executor's code file
// names and --confirm's block digests, the MCP server's token comparison.
// Loading libcrypto (src/dlopen) costs about 1 ms at the first call, more
// than hashing a code block here. HMAC on the wire stays on OpenSSL's
// SHA-2 (src/wire/signer.cpp), which is faster on long messages.
#pragma once

#include <array>
#include <string_view>

namespace kernex::detail {

using sha256_digest = std::array<unsigned char, 32>;

// The SHA-256 digest of data.
sha256_digest sha256(std::string_view data) noexcept;

// Whether a and b are the same, in a time that depends on neither their
// contents nor where they differ (their digests are compared, all 32 bytes).
bool same_secret(std::string_view a, std::string_view b) noexcept;

}  // namespace kernex::detail
