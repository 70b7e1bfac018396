// ledger: which Docker daemons may hold containers of this user's kernex
// processes, so that any later kernex start can sweep those of processes
// that died. A docker::reaper writes an entry when it is made (the daemon's
// address and TLS files, in ledger_dir(), named after the owning process's
// pid and start time), tells its child to
// remove it after the containers at kernex's death, and removes it itself
// at a normal end. An entry is left only when both kernex and its reaper
// were killed (or the reaper could not run, over TLS without kernex-reaper):
// then the next kernex start of any command runs the label sweep
// (containers.hpp: sweep_orphans) on that daemon and removes the entry.
// Internal.
#pragma once

#include <filesystem>
#include <string>

#include "kernex/docker_client.hpp"

namespace kernex::docker {

// $XDG_STATE_HOME/kernex/containers, else ~/.local/state/kernex/containers,
// else <jupyter_runtime_dir()>/kernex-containers (no HOME).
std::filesystem::path ledger_dir();

// Writes this process's entry for the daemon client speaks to. Returns its
// path, empty when it could not be written (never throws: the sweep at the
// next start of a docker executor or provisioner still runs).
std::filesystem::path ledger_note(const docker_client& client) noexcept;

// Removes an entry ledger_note wrote.
void ledger_forget(const std::filesystem::path& entry) noexcept;

// For every entry whose process is gone: the label sweep on its daemon
// (each request bounded by a 2 s deadline), then the entry is removed. A
// daemon that does not answer keeps its entry, tried again at a start at
// least 10 minutes later, for a week after the entry was written (then it
// is dropped: the daemon's own sweep at the next docker executor or kernel
// start on it remains). With no entry, one failed opendir. Returns how many
// containers were removed; never throws.
int sweep_ledger() noexcept;

}  // namespace kernex::docker
