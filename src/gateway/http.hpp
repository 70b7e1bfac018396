// The gateway module's HTTP side, without Boost in sight (internal): an
// endpoint (parsed URL, headers, TLS settings) and one REST request with a
// deadline. net.cpp implements it with Boost.Beast.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "gateway/gateway_url.hpp"
#include "kernex/gateway.hpp"

namespace kernex::gateway_detail {

using steady = std::chrono::steady_clock;

struct endpoint;  // net.hpp

// Parses the URL, builds the headers (Authorization from the token, then the
// user's) and, for https, the TLS context. Throws invalid_argument (URL, a
// header with a line break), not_found (ca_file missing), gateway_error
// (the CA file cannot be loaded).
std::shared_ptr<const endpoint> make_endpoint(const gateway_options& options);
const gateway_url& url_of(const endpoint& ep) noexcept;
const gateway_options& options_of(const endpoint& ep) noexcept;

struct http_response {
    int status = 0;
    std::string reason;
    std::string body;
    std::string location;     // a redirect's Location header, as sent
    std::string redirected;   // the path a followed redirect went to; empty when none was followed
    bool from_hub = false;    // a JupyterHub answered (its X-JupyterHub-Version header)
};

// One request on a fresh connection: method, path below the base URL
// (e.g. "/api/kernels"), a JSON body (empty: none). A redirect to the same
// origin (scheme, host and port: the token is never sent elsewhere) is
// followed once, so that what the server there says (JupyterHub's "424 ...
// Restart the server at ...") reaches the user; a second one, or one to
// another origin, is returned as it is. Returns any HTTP answer; throws
// gateway_error (cannot resolve, connect, TLS, a broken answer) or timeout
// (the whole request past deadline).
http_response http_request(const endpoint& ep, std::string_view method, const std::string& path,
                           const std::string& body, steady::time_point deadline);

// Throws the kernex::error for an unsuccessful answer to `what` (e.g.
// "GET /api/kernels"): permission_denied for 401/403, not_found for 404
// (naming the kernel when kernel_id is set), gateway_error otherwise, with
// the server's message. Implemented in gateway_client.cpp.
[[noreturn]] void throw_http_error(const endpoint& ep, const http_response& res, std::string_view what,
                                   std::string_view kernel_id = {});

// What a redirect (or the answer found behind it) means when it comes from a
// JupyterHub, in words a user can act on; empty when res is neither.
std::string hub_explanation(const endpoint& ep, const http_response& res);

// "12.5 s"
std::string seconds_text(std::chrono::milliseconds ms);

}  // namespace kernex::gateway_detail
