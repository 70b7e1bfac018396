#include "docker/containers.hpp"

#include <cmath>
#include <random>

#include "docker/exec_stream.hpp"
#include "kernex/error.hpp"

namespace kernex::docker {

void check_limits(const container_limits& limits) {
    if (limits.cpus && !(*limits.cpus > 0 && *limits.cpus <= 1024))
        throw error(errc::invalid_argument, "cpus must be a positive number of CPUs");
}

std::string daemon_message(const docker_response& response) {
    const auto parsed = nlohmann::json::parse(response.body, nullptr, false);
    if (parsed.is_object() && parsed.contains("message") && parsed["message"].is_string())
        return parsed["message"].get<std::string>();
    std::string text = response.body.substr(0, 500);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return text;
}

std::string random_hex(std::size_t digits) {
    static constexpr char hex[] = "0123456789abcdef";
    std::random_device device;
    std::string out;
    while (out.size() < digits) {
        unsigned value = device();
        for (int i = 0; i < 8 && out.size() < digits; ++i, value >>= 4) out += hex[value & 0xf];
    }
    return out;
}

std::string create_container(docker_client& client, const container_config& config) {
    check_limits(config.limits);
    nlohmann::json host_config = {
        {"Binds", config.binds},
        {"NetworkMode", config.network_mode},
    };
    if (config.init) host_config["Init"] = true;
    if (config.limits.memory) {
        host_config["Memory"] = *config.limits.memory;
        host_config["MemorySwap"] = *config.limits.memory;  // no swap beyond the limit
    }
    if (config.limits.cpus)
        host_config["NanoCpus"] = static_cast<std::int64_t>(std::llround(*config.limits.cpus * 1e9));
    if (config.limits.pids_limit) host_config["PidsLimit"] = *config.limits.pids_limit;
    nlohmann::json exposed = nlohmann::json::object();
    if (!config.published_ports.empty()) {
        nlohmann::json bindings = nlohmann::json::object();
        for (auto port : config.published_ports) {
            const std::string key = std::to_string(port) + "/tcp";
            exposed[key] = nlohmann::json::object();
            bindings[key] = {{{"HostIp", "127.0.0.1"}, {"HostPort", std::to_string(port)}}};
        }
        host_config["PortBindings"] = bindings;
    }
    nlohmann::json body = {
        {"Image", config.image},
        {"Entrypoint", nlohmann::json::array()},  // the image's entrypoint would wrap our command
        {"Cmd", config.cmd},
        {"WorkingDir", config.working_dir},
        {"Labels", config.labels},
        {"HostConfig", host_config},
    };
    if (!config.env.empty()) body["Env"] = config.env;
    if (!exposed.empty()) body["ExposedPorts"] = exposed;
    if (!config.user.empty()) body["User"] = config.user;

    const docker_response created = client.request("POST", "/containers/create?name=" + config.name, body.dump());
    if (created.status == 404)
        throw error(errc::not_found, "the image '" + config.image + "' is not in the Docker daemon at " +
                                         client.host() + " (" + daemon_message(created) +
                                         "). kernex does not pull images: get it with `docker pull " + config.image +
                                         "` (or build it, or `docker import ROOTFS.tar " + config.image +
                                         "`) and try again");
    if (created.status == 409)
        throw error(errc::docker_error, "a container named '" + config.name + "' already exists in the Docker daemon at " +
                                            client.host() + ": choose another container_name, or remove it");
    if (created.status != 201)
        throw error(errc::docker_error, "the Docker daemon at " + client.host() + " could not create a container from '" +
                                            config.image + "': " + daemon_message(created));
    const auto parsed = nlohmann::json::parse(created.body, nullptr, false);
    if (!parsed.is_object() || !parsed.contains("Id") || !parsed["Id"].is_string())
        throw error(errc::docker_error, "the Docker daemon at " + client.host() + " created a container without an id");
    return parsed["Id"].get<std::string>();
}

void start_container(docker_client& client, const std::string& id, const std::string& image, std::string_view hint) {
    const docker_response started = client.request("POST", "/containers/" + id + "/start");
    if (started.status == 204 || started.status == 304) return;
    throw error(started.status == 404 ? errc::not_found : errc::docker_error,
                "the Docker daemon at " + client.host() + " could not start a container from '" + image +
                    "': " + daemon_message(started) + " (" + std::string(hint) + ")");
}

void remove_container(docker_client& client, const std::string& id) noexcept {
    if (id.empty()) return;
    try {
        client.request("DELETE", "/containers/" + id + "?force=true&v=true");
    } catch (...) {
        // The daemon is gone: so is the container, or nothing can be done about it.
    }
}

std::string container_logs(docker_client& client, const std::string& id, std::size_t max_bytes) noexcept {
    try {
        const docker_response r = client.request("GET", "/containers/" + id + "/logs?stdout=1&stderr=1&tail=200");
        if (r.status != 200) return {};
        std::string text;
        exec_stream_demuxer demuxer;
        demuxer.feed(r.body, [&](docker_stream stream, std::string_view data) {
            if (stream == docker_stream::standard_output || stream == docker_stream::standard_error) text.append(data);
        });
        return text.size() > max_bytes ? text.substr(text.size() - max_bytes) : text;
    } catch (...) {
        return {};
    }
}

}  // namespace kernex::docker
