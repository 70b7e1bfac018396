// The kernels `kernex kernel start` runs on this machine, for `kernex kernel
// list` and `kernex kernel stop`: each running `kernel start` keeps a record
// in the Jupyter runtime dir (kernex-kernel-<ID>.json: its connection file,
// kernel name, the kernel's pid, its own pid and that process's start time)
// and removes it when it shuts the kernel down; killed (kill -9), it is
// removed by a reaper as the connection file is. A record left anyway (the
// machine went down mid-run) is stale: `kernel list --prune` removes it.
//
// A pid in a record is trusted only while the process with that pid started
// at the recorded time and is a `kernex kernel start`: a pid reused by
// another process, or a record someone wrote by hand, never gets a signal.
#pragma once

#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "kernex/process.hpp"

namespace kernex::cli {

// Written by the constructor (the id is the connection file's name without
// "kernel-" and ".json", made unique with "-2", "-3", ...), removed by the
// destructor. Throws kernex::error(io_error) when the record cannot be written.
class kernel_record {
public:
    kernel_record(const std::filesystem::path& connection_file, const std::string& kernel_name, int kernel_pid);
    ~kernel_record();
    kernel_record(const kernel_record&) = delete;
    kernel_record& operator=(const kernel_record&) = delete;

    const std::string& id() const noexcept { return m_id; }

    // The kernel was restarted (a new process): the record names its pid.
    // Replaces the file at once (readers see the old or the new one); a
    // failure leaves the old record. Callable from another thread.
    void set_kernel_pid(int kernel_pid) noexcept;

private:
    std::filesystem::path m_path;
    std::string m_id;
    std::string m_content;  // JSON, without the pid
    std::mutex m_mutex;
    bool m_gone = false;
    // A program that does nothing, under a reaper told to remove the record
    // if kernex dies (kill -9): the record goes with kernex, as the
    // connection file does.
    std::optional<child_process> m_keeper;
};

// Adds `kernel list` and `kernel stop` to the `kernel` command. The runner
// returns their exit status when one of them was chosen, else nullopt.
std::function<std::optional<int>()> add_kernel_list_stop(CLI::App& kernel);

}  // namespace kernex::cli
