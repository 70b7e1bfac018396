// multi_kernel_manager: many kernels by id, safe to call from several threads.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernex/kernel_manager.hpp"

namespace kernex {

class multi_kernel_manager {
public:
    multi_kernel_manager() = default;
    ~multi_kernel_manager();  // shutdown_all(true)
    multi_kernel_manager(const multi_kernel_manager&) = delete;
    multi_kernel_manager& operator=(const multi_kernel_manager&) = delete;

    // Starts a kernel (concurrent calls start kernels in parallel) and returns its id.
    std::string start(kernel_options options = {});
    std::vector<std::string> list() const;
    // The manager for id; throws kernex::error(not_found). The shared_ptr
    // keeps it alive while in use even if another thread shuts it down.
    std::shared_ptr<kernel_manager> get(const std::string& id) const;
    void interrupt(const std::string& id);
    void restart(const std::string& id, restart_options options = {});
    // Shuts the kernel down and forgets it; throws kernex::error(not_found).
    void shutdown(const std::string& id, bool now = false);
    // Shuts every kernel down, in parallel. noexcept.
    void shutdown_all(bool now = false) noexcept;

private:
    mutable std::mutex m_mutex;
    std::unordered_map<std::string, std::shared_ptr<kernel_manager>> m_kernels;
};

}  // namespace kernex
