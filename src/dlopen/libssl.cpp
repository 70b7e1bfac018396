// The libssl functions kernex calls (src/tls, and Boost.Asio's ssl headers
// for https and Docker over TLS), loaded from libssl on the first call: see
// shared_library.hpp.
#include <openssl/ssl.h>

#include "dlopen/shared_library.hpp"

// At global scope: these are the C functions themselves.
using kernex::detail::library;

KERNEX_FORWARD(library::ssl, int, SSL_CTX_check_private_key, (const SSL_CTX* ctx), (ctx))
KERNEX_FORWARD(library::ssl, long, SSL_CTX_ctrl, (SSL_CTX* ctx, int cmd, long larg, void* parg), (ctx, cmd, larg, parg))
KERNEX_FORWARD(library::ssl, void, SSL_CTX_free, (SSL_CTX* ctx), (ctx))
KERNEX_FORWARD(library::ssl, X509*, SSL_CTX_get0_certificate, (const SSL_CTX* ctx), (ctx))
KERNEX_FORWARD(library::ssl, void*, SSL_CTX_get_default_passwd_cb_userdata, (SSL_CTX* ctx), (ctx))
KERNEX_FORWARD(library::ssl, void*, SSL_CTX_get_ex_data, (const SSL_CTX* ssl, int idx), (ssl, idx))
KERNEX_FORWARD(library::ssl, SSL_verify_cb, SSL_CTX_get_verify_callback, (const SSL_CTX* ctx), (ctx))
KERNEX_FORWARD(library::ssl, int, SSL_CTX_load_verify_locations, (SSL_CTX* ctx, const char* CAfile, const char* CApath), (ctx, CAfile, CApath))
KERNEX_FORWARD(library::ssl, SSL_CTX*, SSL_CTX_new, (const SSL_METHOD* meth), (meth))
KERNEX_FORWARD(library::ssl, void, SSL_CTX_set_default_passwd_cb_userdata, (SSL_CTX* ctx, void* u), (ctx, u))
KERNEX_FORWARD(library::ssl, int, SSL_CTX_set_default_verify_paths, (SSL_CTX* ctx), (ctx))
KERNEX_FORWARD(library::ssl, int, SSL_CTX_set_ex_data, (SSL_CTX* ssl, int idx, void* data), (ssl, idx, data))
KERNEX_FORWARD(library::ssl, uint64_t, SSL_CTX_set_options, (SSL_CTX* ctx, uint64_t op), (ctx, op))
KERNEX_FORWARD(library::ssl, void, SSL_CTX_set_verify, (SSL_CTX* ctx, int mode, SSL_verify_cb callback), (ctx, mode, callback))
KERNEX_FORWARD(library::ssl, int, SSL_CTX_use_PrivateKey_file, (SSL_CTX* ctx, const char* file, int type), (ctx, file, type))
KERNEX_FORWARD(library::ssl, int, SSL_CTX_use_certificate_chain_file, (SSL_CTX* ctx, const char* file), (ctx, file))
KERNEX_FORWARD(library::ssl, int, SSL_accept, (SSL* ssl), (ssl))
KERNEX_FORWARD(library::ssl, int, SSL_connect, (SSL* ssl), (ssl))
KERNEX_FORWARD(library::ssl, long, SSL_ctrl, (SSL* ssl, int cmd, long larg, void* parg), (ssl, cmd, larg, parg))
KERNEX_FORWARD(library::ssl, void, SSL_free, (SSL* ssl), (ssl))
KERNEX_FORWARD(library::ssl, X509_VERIFY_PARAM*, SSL_get0_param, (SSL* ssl), (ssl))
KERNEX_FORWARD(library::ssl, X509*, SSL_get_certificate, (const SSL* ssl), (ssl))
KERNEX_FORWARD(library::ssl, int, SSL_get_error, (const SSL* s, int ret_code), (s, ret_code))
KERNEX_FORWARD(library::ssl, void*, SSL_get_ex_data, (const SSL* ssl, int idx), (ssl, idx))
KERNEX_FORWARD(library::ssl, int, SSL_get_shutdown, (const SSL* ssl), (ssl))
KERNEX_FORWARD(library::ssl, long, SSL_get_verify_result, (const SSL* ssl), (ssl))
KERNEX_FORWARD(library::ssl, SSL*, SSL_new, (SSL_CTX* ctx), (ctx))
KERNEX_FORWARD(library::ssl, int, SSL_read, (SSL* ssl, void* buf, int num), (ssl, buf, num))
KERNEX_FORWARD(library::ssl, void, SSL_set_bio, (SSL* s, BIO* rbio, BIO* wbio), (s, rbio, wbio))
KERNEX_FORWARD(library::ssl, int, SSL_set_ex_data, (SSL* ssl, int idx, void* data), (ssl, idx, data))
KERNEX_FORWARD(library::ssl, int, SSL_shutdown, (SSL* s), (s))
KERNEX_FORWARD(library::ssl, int, SSL_write, (SSL* ssl, const void* buf, int num), (ssl, buf, num))
KERNEX_FORWARD(library::ssl, const SSL_METHOD*, TLS_client_method, (), ())
KERNEX_FORWARD(library::ssl, const SSL_METHOD*, TLS_method, (), ())
KERNEX_FORWARD(library::ssl, const SSL_METHOD*, TLS_server_method, (), ())
