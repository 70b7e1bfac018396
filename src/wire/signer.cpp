// HMAC signing with OpenSSL 3's EVP_MAC. The key is set once, in the
// constructor; each message duplicates that keyed context, so the per-message
// cost is a copy of the hash state rather than re-deriving the key pads, and
// const methods stay safe to call from several threads.
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "kernex/error.hpp"
#include "kernex/message.hpp"
#include "wire/hex.hpp"

namespace kernex {

namespace {

struct mac_deleter {
    void operator()(EVP_MAC* m) const noexcept { EVP_MAC_free(m); }
};
struct mac_ctx_deleter {
    void operator()(EVP_MAC_CTX* c) const noexcept { EVP_MAC_CTX_free(c); }
};
using mac_ctx_ptr = std::unique_ptr<EVP_MAC_CTX, mac_ctx_deleter>;

[[noreturn]] void throw_openssl(std::string_view what) {
    char detail[256] = "no detail from OpenSSL";
    if (unsigned long e = ERR_get_error(); e != 0) ERR_error_string_n(e, detail, sizeof detail);
    ERR_clear_error();
    throw error(errc::io_error, std::string("OpenSSL failed to ") + std::string(what) + ": " + detail);
}

// The OpenSSL digest name for a connection file's signature_scheme.
const char* digest_for_scheme(std::string_view scheme) {
    if (scheme == "hmac-sha256") return "SHA256";
    if (scheme == "hmac-sha512") return "SHA512";
    throw error(errc::unsupported,
                "unsupported signature_scheme \"" + std::string(scheme) +
                    "\": kernex signs with \"hmac-sha256\" or \"hmac-sha512\"; "
                    "set signature_scheme in the connection file to one of them");
}

}  // namespace

struct signer::impl {
    mac_ctx_ptr m_keyed;         // null when the key is empty (unsigned messages)
    std::size_t m_digest_len = 0; // bytes; 0 when unsigned

    // Writes the HMAC of the concatenated parts into out[0..digest_len).
    void mac(std::initializer_list<std::string_view> parts, unsigned char* out) const {
        mac_ctx_ptr ctx(EVP_MAC_CTX_dup(m_keyed.get()));
        if (!ctx) throw_openssl("copy the HMAC context");
        for (std::string_view p : parts)
            if (EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(p.data()), p.size()) != 1)
                throw_openssl("update the HMAC");
        std::size_t written = 0;
        if (EVP_MAC_final(ctx.get(), out, &written, wire::max_digest_bytes) != 1 || written != m_digest_len)
            throw_openssl("finish the HMAC");
    }
};

signer::signer(std::string key, std::string_view scheme) : m_impl(std::make_unique<impl>()) {
    // The scheme is checked even without a key, so that a bad connection file
    // fails the same way whether or not it carries a key.
    const char* digest = digest_for_scheme(scheme);
    if (key.empty()) return;

    std::unique_ptr<EVP_MAC, mac_deleter> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    if (!mac) throw_openssl("load HMAC");
    mac_ctx_ptr ctx(EVP_MAC_CTX_new(mac.get()));
    if (!ctx) throw_openssl("create an HMAC context");
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(digest), 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_init(ctx.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(), params) != 1)
        throw_openssl("set the HMAC key");
    m_impl->m_digest_len = EVP_MAC_CTX_get_mac_size(ctx.get());
    if (m_impl->m_digest_len == 0 || m_impl->m_digest_len > wire::max_digest_bytes) throw_openssl("size the HMAC");
    m_impl->m_keyed = std::move(ctx);
    // The key is not kept: the keyed context is all later messages need.
    OPENSSL_cleanse(key.data(), key.size());
}

signer::~signer() = default;
signer::signer(signer&&) noexcept = default;
signer& signer::operator=(signer&&) noexcept = default;

bool signer::enabled() const noexcept { return m_impl && m_impl->m_keyed; }

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
    wire::digest_bytes actual;
    m_impl->mac(parts, actual.data());
    return CRYPTO_memcmp(claimed.data(), actual.data(), m_impl->m_digest_len) == 0;
}

}  // namespace kernex
