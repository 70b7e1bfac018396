// kernex-reaper: the container reaper for a Docker daemon reached over TLS
// (see reaper.hpp). Started by kernex, never by hand: its orders come on fd
// 3; when that socket ends without a goodbye, kernex has died, and what it
// made is removed.
//
//   kernex-reaper --host tcp://HOST:PORT --ca CA.pem [--cert CERT.pem --key KEY.pem]
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string_view>

#include "docker/reaper.hpp"

int main(int argc, char** argv) {
    kernex::docker_client_options options;
    options.tls.verify = true;
    options.timeout = std::chrono::seconds(10);
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view flag = argv[i];
        if (flag == "--host") options.host = argv[i + 1];
        else if (flag == "--ca") options.tls.ca = argv[i + 1];
        else if (flag == "--cert") options.tls.cert = argv[i + 1];
        else if (flag == "--key") options.tls.key = argv[i + 1];
        else {
            std::cerr << "kernex-reaper: unknown flag " << flag << " (it is started by kernex, not by hand)\n";
            return 2;
        }
    }
    if (options.host.empty() || options.tls.ca.empty()) {
        std::cerr << "kernex-reaper: it is started by kernex with --host and --ca, not by hand\n";
        return 2;
    }
    // A daemon that asks for no client certificate: the CA's dir holds none either.
    if (options.tls.cert.empty()) ::setenv("DOCKER_CERT_PATH", options.tls.ca.parent_path().c_str(), 1);
    return kernex::docker::run_reaper_helper(3, options);
}
