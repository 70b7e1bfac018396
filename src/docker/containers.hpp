// Containers as kernex makes them, for docker_executor and the kernel
// manager's docker provisioner alike: created from a local image (never
// pulled) with the work dir bound, a network mode, limits, confinement
// (caps dropped, no-new-privileges, read-only root) and labels naming the
// kernex process that owns them; started; their logs read; removed; and the
// containers of kernex processes that died without removing theirs swept
// away (see reaper.hpp for the removal at kernex's death). Internal to kernex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernex/docker_client.hpp"

namespace kernex::docker {

struct container_limits {
    std::optional<std::uint64_t> memory;  // bytes, swap included
    std::optional<double> cpus;
    std::optional<std::int64_t> pids_limit;
};

// What the code in the container may do beyond its user's rights (see
// docs/security.md): by default nothing.
struct container_confinement {
    bool read_only = true;             // the root filesystem; /tmp is then a tmpfs
    bool no_new_privileges = true;     // setuid/setgid bits and file caps grant nothing
    std::vector<std::string> cap_add;  // every capability is dropped but these
};

struct container_config {
    std::string image;
    std::string name;
    std::vector<std::string> cmd;          // run as given: the image's entrypoint is overridden
    std::vector<std::string> env;          // "NAME=value"
    std::string working_dir = "/workspace";
    std::string user;                      // empty: the image's
    std::vector<std::string> binds;        // "host:container:rw"
    // Volumes of the local driver on a tmpfs, made with the container and
    // removed with it: {target, mount options ("uid=1000,gid=1000,mode=0700")}.
    std::vector<std::pair<std::string, std::string>> tmpfs_volumes;
    std::string network_mode = "none";
    container_limits limits;
    std::map<std::string, std::string> labels;
    bool init = false;                     // docker-init as PID 1: forwards signals, reaps, exits with the command
    // stdin open for one attach (OpenStdin, StdinOnce): closed for the command when that attach ends.
    bool open_stdin = false;
    bool no_logs = false;  // the "none" log driver: what the first process prints is kept nowhere (attach still sees it)
    std::vector<std::uint16_t> published_ports;  // tcp ports published on 127.0.0.1 under the same number
    container_confinement confinement;
};

// Labels naming this process as a container's owner (pid, its start time,
// the boot id), for sweep_orphans(); temp_dirs: host dirs of this container
// that kernex made and a sweep removes with it; mount_points: nosuid_bind's,
// which a sweep unmounts and rmdirs (never empties).
std::map<std::string, std::string> owner_labels(const std::vector<std::string>& temp_dirs = {},
                                                const std::vector<std::string>& mount_points = {});

// A process's start time (/proc/PID/stat's 22nd field, clock ticks after
// boot): with the pid it names one process of this boot. Empty when there is
// no such process.
std::string process_start_time(const std::string& pid);

// Removes the containers of kernex processes of this host that no longer
// exist (killed before they could remove theirs), with their temporary dirs
// when they are still there and ours (only once their container is gone:
// a container the daemon did not remove keeps them for the next sweep).
// Containers of another boot or host are left alone. Returns how many were
// removed; *complete (when given) says whether every one was. Never throws.
int sweep_orphans(docker_client& client, bool* complete = nullptr) noexcept;


// The work dir's nosuid mount (nosuid_bind.hpp, where kernex can make it)
// acts only on exec through the container's mount: a file the code made
// setuid or setgid (root's, when it runs as root; the caller's otherwise)
// would let another user of the host who can reach the work dir run it as
// that user through the host's own mount. Once no process of the code runs
// any more (nothing can swap a name meanwhile), clear_setuid_bits clears
// those bits in dir. Links are not followed. Returns how many files had them.
std::size_t clear_setuid_bits(const std::filesystem::path& dir) noexcept;

// Throws kernex::error(invalid_argument) for cpus out of (0, 1024].
void check_limits(const container_limits& limits);

// Creates the container and returns its id. Throws kernex::error: not_found
// when the image is not in the daemon (saying how to get one), docker_error
// when the name is taken or the daemon refuses.
std::string create_container(docker_client& client, const container_config& config);

// Starts it (a stopped one again). Throws kernex::error(docker_error) with
// the daemon's message and `hint` (what the image or the options may lack).
void start_container(docker_client& client, const std::string& id, const std::string& image, std::string_view hint);

// DELETE ?force: killed and removed, volumes with it. True when the
// container is gone (removed now, or not there); false when the daemon
// refused or did not answer. noexcept: the daemon may be gone.
bool remove_container(docker_client& client, const std::string& id) noexcept;

// The last max_bytes of what the container wrote on stdout and stderr (GET
// /logs, demultiplexed, in the order the daemon gives). Empty when the daemon
// cannot say; never throws.
std::string container_logs(docker_client& client, const std::string& id, std::size_t max_bytes) noexcept;

// The daemon's {"message": ...} of a response, else its body, trimmed.
std::string daemon_message(const docker_response& response);

// digits random hex digits, for names.
std::string random_hex(std::size_t digits);

// text percent-encoded for a URL's query (all but unreserved characters).
std::string url_encode(std::string_view text);

}  // namespace kernex::docker
