// HMAC signing (RFC 2104) over OpenSSL's SHA-256 and SHA-512. The key is
// taken once, in the constructor: the hash states after the inner and the
// outer key block are kept, and each message starts from copies of them. A
// state is a plain struct, so a message costs its hashing and two struct
// copies: no allocation, no provider lookup, and no OpenSSL initialisation
// (its configuration file and providers, about 0.85 ms at the first use
// through EVP, are never loaded for this). OpenSSL 3 deprecates these
// functions in favour of EVP_MAC, whose contexts cost several allocations
// and reference counts per message (8 us for a status message, against
// well under 1 us here); the tests check every result against EVP's HMAC.
// Const methods are safe to call from several threads: the kept states are
// never written after the constructor.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cstring>
#include <variant>

#include "kernex/error.hpp"
#include "kernex/message.hpp"
#include "wire/hex.hpp"

namespace kernex {

namespace {

// The operations of one SHA-2 function on its state struct.
template <class Ctx, std::size_t Block, std::size_t Digest, int (*Init)(Ctx*),
          int (*Update)(Ctx*, const void*, std::size_t), int (*Final)(unsigned char*, Ctx*)>
struct sha2 {
    using ctx = Ctx;
    static constexpr std::size_t block = Block;
    static constexpr std::size_t digest = Digest;
    static void init(Ctx& c) { Init(&c); }
    static void update(Ctx& c, const void* p, std::size_t n) { Update(&c, p, n); }
    static void final(unsigned char* out, Ctx& c) { Final(out, &c); }
};
using sha256 = sha2<SHA256_CTX, SHA256_CBLOCK, SHA256_DIGEST_LENGTH, SHA256_Init, SHA256_Update, SHA256_Final>;
using sha512 = sha2<SHA512_CTX, SHA512_CBLOCK, SHA512_DIGEST_LENGTH, SHA512_Init, SHA512_Update, SHA512_Final>;

// HMAC with hash H under one key: the states after the key's inner and
// outer blocks.
template <class H>
struct keyed {
    typename H::ctx inner, outer;

    explicit keyed(std::string_view key) {
        unsigned char block[H::block] = {};
        if (key.size() > H::block) {
            typename H::ctx c;
            H::init(c);
            H::update(c, key.data(), key.size());
            H::final(block, c);
            OPENSSL_cleanse(&c, sizeof c);
        } else {
            std::memcpy(block, key.data(), key.size());
        }
        unsigned char pad[H::block];
        for (std::size_t i = 0; i < H::block; ++i) pad[i] = block[i] ^ 0x36;
        H::init(inner);
        H::update(inner, pad, H::block);
        for (std::size_t i = 0; i < H::block; ++i) pad[i] = block[i] ^ 0x5c;
        H::init(outer);
        H::update(outer, pad, H::block);
        OPENSSL_cleanse(block, sizeof block);
        OPENSSL_cleanse(pad, sizeof pad);
    }
    ~keyed() {
        OPENSSL_cleanse(&inner, sizeof inner);
        OPENSSL_cleanse(&outer, sizeof outer);
    }
    keyed(const keyed&) = delete;
    keyed& operator=(const keyed&) = delete;

    void mac(std::initializer_list<std::string_view> parts, unsigned char* out) const {
        typename H::ctx c = inner;
        for (std::string_view p : parts) H::update(c, p.data(), p.size());
        unsigned char inner_digest[H::digest];
        H::final(inner_digest, c);
        c = outer;
        H::update(c, inner_digest, H::digest);
        H::final(out, c);
        OPENSSL_cleanse(&c, sizeof c);
    }
};

// The digest size for a connection file's signature_scheme.
std::size_t digest_for_scheme(std::string_view scheme) {
    if (scheme == "hmac-sha256") return SHA256_DIGEST_LENGTH;
    if (scheme == "hmac-sha512") return SHA512_DIGEST_LENGTH;
    throw error(errc::unsupported,
                "unsupported signature_scheme \"" + std::string(scheme) +
                    "\": kernex signs with \"hmac-sha256\" or \"hmac-sha512\"; "
                    "set signature_scheme in the connection file to one of them");
}

}  // namespace

struct signer::impl {
    // Empty when the key is empty (unsigned messages).
    std::variant<std::monostate, keyed<sha256>, keyed<sha512>> m_keyed;
    std::size_t m_digest_len = 0;  // bytes; 0 when unsigned

    // Writes the HMAC of the concatenated parts into out[0..digest_len).
    void mac(std::initializer_list<std::string_view> parts, unsigned char* out) const {
        if (auto* k = std::get_if<keyed<sha256>>(&m_keyed)) k->mac(parts, out);
        else if (auto* k5 = std::get_if<keyed<sha512>>(&m_keyed)) k5->mac(parts, out);
    }
};

signer::signer(std::string key, std::string_view scheme) : m_impl(std::make_unique<impl>()) {
    // The scheme is checked even without a key, so that a bad connection file
    // fails the same way whether or not it carries a key.
    const std::size_t digest = digest_for_scheme(scheme);
    if (key.empty()) return;
    if (digest == SHA256_DIGEST_LENGTH) m_impl->m_keyed.emplace<keyed<sha256>>(key);
    else m_impl->m_keyed.emplace<keyed<sha512>>(key);
    m_impl->m_digest_len = digest;
    // The key is not kept: the keyed states are all later messages need.
    OPENSSL_cleanse(key.data(), key.size());
}

signer::~signer() = default;
signer::signer(signer&&) noexcept = default;
signer& signer::operator=(signer&&) noexcept = default;

bool signer::enabled() const noexcept { return m_impl && m_impl->m_digest_len != 0; }

std::size_t signer::hex_length() const noexcept { return enabled() ? 2 * m_impl->m_digest_len : 0; }

std::string signer::sign(std::initializer_list<std::string_view> parts) const {
    std::string out;
    if (!enabled()) return out;
    wire::digest_bytes digest;
    m_impl->mac(parts, digest.data());
    out.reserve(2 * m_impl->m_digest_len);
    wire::append_hex(out, digest.data(), m_impl->m_digest_len);
    return out;
}

bool signer::verify(std::string_view hex_signature, std::initializer_list<std::string_view> parts) const {
    // Without a key jupyter_client checks nothing (Session.auth is None), so
    // neither do we: any signature, empty or not, is accepted.
    if (!enabled()) return true;
    wire::digest_bytes claimed;
    if (!wire::decode_hex(hex_signature, claimed.data(), m_impl->m_digest_len)) return false;
    return verify_digest(claimed.data(), parts);
}

bool signer::verify_digest(const unsigned char* digest, std::initializer_list<std::string_view> parts) const {
    if (!enabled()) return true;
    wire::digest_bytes actual;
    m_impl->mac(parts, actual.data());
    return CRYPTO_memcmp(digest, actual.data(), m_impl->m_digest_len) == 0;
}

}  // namespace kernex
