// gateway_client: the REST API of Jupyter Server / Kernel Gateway /
// Enterprise Gateway, and the messages that tell a user what went wrong and
// what to do. Immutable after construction, so calls are thread-safe (each
// request has its own connection): interrupt may come from any thread.
#include "kernex/gateway.hpp"

#include <algorithm>
#include <cstdlib>

#include "gateway/http.hpp"
#include "gateway/websocket_transport.hpp"
#include "kernex/error.hpp"
#include "wire/json_text.hpp"

namespace kernex {

using namespace gateway_detail;

namespace {

std::string str(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The server's explanation in an error body: "message", or the last line of
// a traceback when the message says nothing.
std::string server_message(const std::string& body) {
    json j;
    if (!wire::parse_object(body, 100, j)) return {};
    std::string message = str(j, "message");
    std::string trace = str(j, "traceback");
    if ((message.empty() || message == "Unhandled error") && !trace.empty()) {
        while (!trace.empty() && (trace.back() == '\n' || trace.back() == ' ')) trace.pop_back();
        message = trace.substr(trace.rfind('\n') == std::string::npos ? 0 : trace.rfind('\n') + 1);
    }
    if (message.size() > 300) message = message.substr(0, 300) + "...";
    return message;
}

std::string kernel_path(const std::string& id) { return "/api/kernels/" + percent_encode(id); }

remote_kernel_model to_model(const json& j) {
    remote_kernel_model m;
    if (!j.is_object()) return m;
    m.id = str(j, "id");
    m.name = str(j, "name");
    m.execution_state = str(j, "execution_state");
    m.last_activity = str(j, "last_activity");
    if (auto it = j.find("connections"); it != j.end() && it->is_number_integer()) m.connections = it->get<int>();
    m.raw = j;
    return m;
}

// A kernelspec as the server describes it; malformed fields are left empty.
kernelspec to_kernelspec(const std::string& fallback_name, const json& entry) {
    kernelspec k;
    k.name = entry.is_object() && !str(entry, "name").empty() ? str(entry, "name") : fallback_name;
    if (!entry.is_object()) return k;
    auto spec_it = entry.find("spec");
    if (spec_it == entry.end() || !spec_it->is_object()) return k;
    const json& spec = *spec_it;
    if (auto it = spec.find("argv"); it != spec.end() && it->is_array())
        for (const auto& a : *it)
            if (a.is_string()) k.argv.push_back(a.get<std::string>());
    k.display_name = str(spec, "display_name");
    k.language = str(spec, "language");
    k.interrupt_mode = str(spec, "interrupt_mode") == "message" ? interrupt_mode::message : interrupt_mode::signal;
    if (auto it = spec.find("env"); it != spec.end() && it->is_object())
        for (const auto& [key, value] : it->items())
            if (value.is_string()) k.env[key] = value.get<std::string>();
    if (auto it = spec.find("metadata"); it != spec.end() && it->is_object()) k.metadata = *it;
    return k;
}

}  // namespace

namespace gateway_detail {

std::string hub_explanation(const endpoint& ep, const http_response& res) {
    // A hub answers for a user server that is not running: 302 to
    // /hub/user/NAME/..., 424 there, 503 from its proxy while it goes.
    const bool redirect = res.status >= 300 && res.status <= 399;
    const bool via_hub = res.from_hub || res.location.find("/hub/") != std::string::npos ||
                         res.redirected.find("/hub/") != std::string::npos;
    if (!(via_hub && (redirect || res.status == 424 || res.status == 503 || !res.redirected.empty())) &&
        !(redirect && !res.location.empty()))
        return {};
    // The user's name, from a base URL ending in /user/NAME (a hub's own
    // prefix may come before it).
    const std::string& base = url_of(ep).base_path;
    std::string user = "NAME";
    if (const auto at = base.rfind("/user/"); at != std::string::npos && base.find('/', at + 6) == std::string::npos)
        user = base.substr(at + 6);
    const std::string server = (user == "NAME" ? std::string("/user/NAME/") : base + "/");
    return "on a JupyterHub this means the server at " + server +
           " is not running, or the URL is not a user's server URL (it must end in /user/NAME/); start it with "
           "POST /hub/api/users/" + user + "/server or from the hub's home page";
}

void throw_http_error(const endpoint& ep, const http_response& res, std::string_view what, std::string_view kernel_id) {
    const std::string& url = url_of(ep).display;
    const int status = res.status;
    std::string answer = "HTTP " + std::to_string(status) + (res.reason.empty() ? "" : " " + res.reason);
    if (!res.redirected.empty()) answer += ", after a redirect to " + res.redirected;
    else if (status >= 300 && status <= 399 && !res.location.empty())
        answer += ", sending it to " + res.location;
    std::string said = server_message(res.body);
    if (status == 401 || status == 403) {
        std::string why = options_of(ep).token.empty() ? "no token was given" : "the token was not accepted";
        throw error(errc::permission_denied,
                    "the Jupyter server at " + url + " refused " + std::string(what) + " (" + answer + "): " + why +
                        "; pass the server's token with --token or KERNEX_GATEWAY_TOKEN (gateway_options::token)");
    }
    if (status == 404 && !kernel_id.empty())
        throw error(errc::not_found, "the Jupyter server at " + url + " has no kernel " + std::string(kernel_id) +
                                         " (it was shut down, culled, or the server restarted); start a new one");
    if (status == 404 && res.redirected.empty())
        throw error(errc::gateway_error, url + " has nothing at " + std::string(what) + " (" + answer +
                                             "): is it a Jupyter Server or gateway, and is the base URL right?");
    const std::string hub = hub_explanation(ep, res);
    throw error(errc::gateway_error, "the Jupyter server at " + url + " answered " + std::string(what) + " with " +
                                         answer + (said.empty() ? "" : ": " + said) + (hub.empty() ? "" : "; " + hub));
}

}  // namespace gateway_detail

std::optional<gateway_options> gateway_options::from_environment() {
    const char* url = std::getenv("KERNEX_GATEWAY_URL");
    if (!url || !*url) return std::nullopt;
    gateway_options o;
    o.url = url;
    if (const char* token = std::getenv("KERNEX_GATEWAY_TOKEN")) o.token = token;
    return o;
}

std::optional<gateway_options> gateway_options::from_arguments(const std::string& url, const std::string& token) {
    auto o = from_environment();
    if (url.empty() && !o) return std::nullopt;
    if (!o) {
        o.emplace();
        if (const char* env_token = std::getenv("KERNEX_GATEWAY_TOKEN")) o->token = env_token;
    }
    if (!url.empty()) o->url = url;
    if (!token.empty()) o->token = token;
    return o;
}

struct gateway_client::impl {
    std::shared_ptr<const endpoint> ep;

    steady::time_point deadline(std::optional<std::chrono::milliseconds> timeout) const {
        return steady::now() + timeout.value_or(options_of(*ep).request_timeout);
    }

    // A request whose answer must be 2xx; returns the body parsed (null
    // when empty), or nullopt for a 404 when missing_ok.
    std::optional<json> call(std::string_view method, const std::string& path, const json& body = nullptr,
                             std::optional<std::chrono::milliseconds> timeout = std::nullopt,
                             std::string_view kernel_id = {}, bool missing_ok = false) const {
        auto res = http_request(*ep, method, path, body.is_null() ? std::string() : body.dump(), deadline(timeout));
        const std::string what = std::string(method) + " " + path;
        if (res.status == 404 && missing_ok) return std::nullopt;
        if (res.status < 200 || res.status > 299) throw_http_error(*ep, res, what, kernel_id);
        if (res.body.empty()) return json(nullptr);
        json j;
        // Answers are objects, except lists of kernels: parse those as {"_": [...]}.
        if (wire::parse_object(res.body, 1000, j)) return j;
        if (wire::parse_object("{\"_\":" + res.body + "}", 1000, j)) return j["_"];
        throw error(errc::gateway_error, "the Jupyter server at " + url_of(*ep).display + " answered " + what +
                                             " with something that is not JSON: is the URL right?");
    }
};

gateway_client::gateway_client(gateway_options options) : m_impl(std::make_shared<impl>()) {
    m_impl->ep = make_endpoint(options);
}
gateway_client::~gateway_client() = default;
gateway_client::gateway_client(gateway_client&&) noexcept = default;
gateway_client& gateway_client::operator=(gateway_client&&) noexcept = default;

json gateway_client::status() const { return *m_impl->call("GET", "/api/status"); }

remote_kernelspecs gateway_client::kernelspecs() const {
    remote_kernelspecs out;
    out.raw = *m_impl->call("GET", "/api/kernelspecs");
    if (!out.raw.is_object()) out.raw = json::object();
    out.default_name = str(out.raw, "default");
    if (auto it = out.raw.find("kernelspecs"); it != out.raw.end() && it->is_object())
        for (const auto& [name, entry] : it->items()) out.specs.push_back(to_kernelspec(name, entry));
    std::sort(out.specs.begin(), out.specs.end(), [](const kernelspec& a, const kernelspec& b) { return a.name < b.name; });
    return out;
}

kernelspec gateway_client::kernelspec_named(const std::string& name) const {
    if (auto spec = m_impl->call("GET", "/api/kernelspecs/" + percent_encode(name), nullptr, std::nullopt, {}, true))
        return to_kernelspec(name, *spec);
    std::string names;
    for (const auto& k : kernelspecs().specs) names += (names.empty() ? "" : ", ") + k.name;
    throw error(errc::not_found, "the Jupyter server at " + display_url() + " has no kernelspec '" + name +
                                     "'; it has: " + (names.empty() ? "none" : names) +
                                     " (see kernex kernelspec list --gateway URL)");
}

std::vector<remote_kernel_model> gateway_client::kernels() const {
    std::vector<remote_kernel_model> out;
    json list = *m_impl->call("GET", "/api/kernels");
    if (list.is_array())
        for (const auto& k : list) out.push_back(to_model(k));
    return out;
}

remote_kernel_model gateway_client::start_kernel(const std::string& kernel_name,
                                                 const std::map<std::string, std::string>& env,
                                                 std::optional<std::chrono::milliseconds> timeout) const {
    json body = {{"name", kernel_name}};
    if (!env.empty()) body["env"] = env;
    auto model = to_model(*m_impl->call("POST", "/api/kernels", body, timeout));
    if (model.id.empty())
        throw error(errc::gateway_error, "the Jupyter server at " + display_url() +
                                             " started a kernel but did not say its id");
    return model;
}

remote_kernel_model gateway_client::kernel(const std::string& kernel_id) const {
    return to_model(*m_impl->call("GET", kernel_path(kernel_id), nullptr, std::nullopt, kernel_id));
}

void gateway_client::interrupt_kernel(const std::string& kernel_id) const {
    m_impl->call("POST", kernel_path(kernel_id) + "/interrupt", nullptr, std::nullopt, kernel_id);
}

remote_kernel_model gateway_client::restart_kernel(const std::string& kernel_id,
                                                   std::optional<std::chrono::milliseconds> timeout) const {
    return to_model(*m_impl->call("POST", kernel_path(kernel_id) + "/restart", nullptr, timeout, kernel_id));
}

void gateway_client::delete_kernel(const std::string& kernel_id) const {
    m_impl->call("DELETE", kernel_path(kernel_id), nullptr, std::nullopt, kernel_id);
}

std::unique_ptr<transport> gateway_client::connect(const std::string& kernel_id, const std::string& session,
                                                   std::optional<std::chrono::milliseconds> timeout) const {
    return open_websocket(m_impl->ep, kernel_id, session, m_impl->deadline(timeout));
}

const gateway_options& gateway_client::options() const noexcept { return options_of(*m_impl->ep); }
const std::string& gateway_client::display_url() const noexcept { return url_of(*m_impl->ep).display; }

}  // namespace kernex
