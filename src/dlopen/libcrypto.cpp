// The libcrypto functions kernex calls (the wire's HMAC signer, src/tls,
// Boost.Asio's ssl headers), loaded from libcrypto on the first call: see
// shared_library.hpp. The low-level SHA-2 functions are deprecated in
// OpenSSL 3 but kept on purpose (src/wire/signer.cpp says why).
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "dlopen/shared_library.hpp"

// At global scope: these are the C functions themselves.
using kernex::detail::library;

KERNEX_FORWARD(library::crypto, int, ASN1_TIME_print, (BIO* bp, const ASN1_TIME* tm), (bp, tm))
KERNEX_FORWARD(library::crypto, long, BIO_ctrl, (BIO* bp, int cmd, long larg, void* parg), (bp, cmd, larg, parg))
KERNEX_FORWARD(library::crypto, size_t, BIO_ctrl_pending, (BIO* b), (b))
KERNEX_FORWARD(library::crypto, int, BIO_free, (BIO* a), (a))
KERNEX_FORWARD(library::crypto, BIO*, BIO_new, (const BIO_METHOD* type), (type))
KERNEX_FORWARD(library::crypto, int, BIO_new_bio_pair, (BIO** bio1, size_t writebuf1, BIO** bio2, size_t writebuf2), (bio1, writebuf1, bio2, writebuf2))
KERNEX_FORWARD(library::crypto, int, BIO_read, (BIO* b, void* data, int dlen), (b, data, dlen))
KERNEX_FORWARD(library::crypto, const BIO_METHOD*, BIO_s_mem, (), ())
KERNEX_FORWARD(library::crypto, int, BIO_write, (BIO* b, const void* data, int dlen), (b, data, dlen))
KERNEX_FORWARD(library::crypto, int, CRYPTO_memcmp, (const void* in_a, const void* in_b, size_t len), (in_a, in_b, len))
KERNEX_FORWARD(library::crypto, void, ERR_clear_error, (), ())
KERNEX_FORWARD(library::crypto, unsigned long, ERR_get_error, (), ())
KERNEX_FORWARD(library::crypto, const char*, ERR_reason_error_string, (unsigned long e), (e))
KERNEX_FORWARD(library::crypto, void, OPENSSL_cleanse, (void* ptr, size_t len), (ptr, len))
KERNEX_FORWARD(library::crypto, int, SHA256_Final, (unsigned char* md, SHA256_CTX* c), (md, c))
KERNEX_FORWARD(library::crypto, int, SHA256_Init, (SHA256_CTX* c), (c))
KERNEX_FORWARD(library::crypto, int, SHA256_Update, (SHA256_CTX* c, const void* data, size_t len), (c, data, len))
KERNEX_FORWARD(library::crypto, int, SHA512_Final, (unsigned char* md, SHA512_CTX* c), (md, c))
KERNEX_FORWARD(library::crypto, int, SHA512_Init, (SHA512_CTX* c), (c))
KERNEX_FORWARD(library::crypto, int, SHA512_Update, (SHA512_CTX* c, const void* data, size_t len), (c, data, len))
KERNEX_FORWARD(library::crypto, int, X509_VERIFY_PARAM_set1_host, (X509_VERIFY_PARAM* param, const char* name, size_t namelen), (param, name, namelen))
KERNEX_FORWARD(library::crypto, int, X509_VERIFY_PARAM_set1_ip_asc, (X509_VERIFY_PARAM* param, const char* ipasc), (param, ipasc))
KERNEX_FORWARD(library::crypto, int, X509_cmp_current_time, (const ASN1_TIME* s), (s))
KERNEX_FORWARD(library::crypto, const ASN1_TIME*, X509_get0_notAfter, (const X509* x), (x))
KERNEX_FORWARD(library::crypto, const ASN1_TIME*, X509_get0_notBefore, (const X509* x), (x))
KERNEX_FORWARD(library::crypto, const char*, X509_verify_cert_error_string, (long n), (n))
